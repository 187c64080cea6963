"""Reading and writing ``.ckpt`` files: atomic writes, metadata, clear errors on bad files.

Training stores a JSON metadata string under :data:`META_KEY` (arch, num_classes, stem,
image size, normalisation, class names, epoch, accuracy), so evaluation, prediction and
export only need the checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import mindspore as ms

from mindresnet.fileio import atomic_path
from mindresnet.errors import CheckpointError

META_KEY = "mindresnet_meta"

PathLike = Union[str, os.PathLike]


def read_checkpoint(path: PathLike) -> Tuple[Dict[str, ms.Parameter], Dict[str, Any]]:
    """Load ``path`` into (parameters by name, metadata dict; empty when the file has none).

    Raises:
        CheckpointError: the file does not exist, is empty, truncated or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist. Check the --ckpt/--pretrained path.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes), probably an interrupted "
                              "download or copy. Delete it and download or copy it again.")
    try:
        entries = ms.load_checkpoint(str(path))
    except Exception as exc:
        raise CheckpointError(f"Checkpoint {path} cannot be read ({exc}). The file is truncated or "
                              "not a MindSpore .ckpt; delete it and download or copy it again.") from exc
    meta: Dict[str, Any] = {}
    raw = entries.pop(META_KEY, None)
    if raw is not None:
        try:
            meta = json.loads(str(raw))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"Checkpoint {path} has unreadable mindresnet metadata: {exc}") from exc
    params = {name: value for name, value in entries.items() if isinstance(value, ms.Parameter)}
    if not params:
        raise CheckpointError(f"Checkpoint {path} holds no parameters. Use a checkpoint saved by "
                              "mindspore.save_checkpoint.")
    return params, meta


def read_metadata(path: PathLike) -> Dict[str, Any]:
    """The mindresnet metadata stored in ``path`` ({} for a checkpoint from elsewhere)."""
    return read_checkpoint(path)[1]


def save_checkpoint(params: Union[ms.nn.Cell, Iterable[ms.Parameter]], path: PathLike,
                    metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``params`` (a Cell or parameters) and ``metadata`` to ``path`` atomically.

    The file is written under a temporary name in the same folder and renamed, so a crash or
    Ctrl-C never leaves a half-written checkpoint under the final name.
    """
    if isinstance(params, ms.nn.Cell):
        save_obj: Any = params
    else:
        save_obj = [{"name": p.name, "data": p} for p in params]
    append = {META_KEY: json.dumps(metadata)} if metadata else None
    with atomic_path(path, ".ckpt") as tmp:  # ms.save_checkpoint appends ".ckpt" to names without it
        ms.save_checkpoint(save_obj, str(tmp), append_dict=append)
    return Path(path)


def assign_parameters(cell: ms.nn.Cell, params: Dict[str, ms.Parameter]) -> list:
    """Copy ``params`` into ``cell`` by exact name; return the names of ``cell`` not in ``params``.

    Unlike ``mindspore.load_param_into_net``, no prefix is ever stripped to find a match, so a
    value can only land in the parameter of the same name.
    """
    missing = []
    for param in cell.get_parameters():
        if param.name in params:
            value = params[param.name]
            param.set_data(ms.Tensor(value.asnumpy(), dtype=param.dtype))
        else:
            missing.append(param.name)
    return missing
