"""Reading and writing ``.ckpt`` files: atomic writes, metadata, clear errors on bad files.

Training stores a :class:`~mindresnet.checkpoint_meta.CheckpointMeta` as JSON under
:data:`META_KEY`, so evaluation, prediction, export and resume only need the checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import mindspore as ms

from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.errors import CheckpointError
from mindresnet.fileio import PathLike, atomic_path

META_KEY = "mindresnet_meta"


def read_checkpoint(path: PathLike) -> Tuple[Dict[str, ms.Parameter], Optional[CheckpointMeta]]:
    """Load ``path`` into (parameters by name, its metadata or None for a checkpoint from elsewhere).

    Raises:
        CheckpointError: the file does not exist, is empty, truncated or not a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {path} is a folder; pass the .ckpt file in it.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist. Check the path.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes), probably an interrupted "
                              "download or copy. Delete it and download or copy it again.")
    try:
        entries = ms.load_checkpoint(str(path))
    except Exception as exc:
        raise CheckpointError(f"Checkpoint {path} cannot be read ({exc}). The file is truncated or "
                              "not a MindSpore .ckpt; delete it and download or copy it again.") from exc
    meta = None
    raw = entries.pop(META_KEY, None)
    if raw is not None:
        try:
            stored = json.loads(str(raw))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"Checkpoint {path} has unreadable mindresnet metadata: {exc}") from exc
        meta = CheckpointMeta.from_dict(stored, str(path))
    params = {name: value for name, value in entries.items() if isinstance(value, ms.Parameter)}
    if not params:
        raise CheckpointError(f"Checkpoint {path} holds no parameters. Use a checkpoint saved by "
                              "mindspore.save_checkpoint.")
    return params, meta


def save_checkpoint(params: Union[ms.nn.Cell, Iterable[ms.Parameter]], path: PathLike,
                    meta: Optional[CheckpointMeta] = None, keep_backup: bool = False) -> Path:
    """Write ``params`` (a Cell or parameters) and ``meta`` to ``path`` atomically.

    A network built by :func:`mindresnet.models.create_model` describes itself when no ``meta`` is
    given (arch, head, stem and padding convention; preprocessing by stem, see
    :meth:`CheckpointMeta.describe`), so loading the file rebuilds the function it computes.

    The file is written under a temporary name in the same folder and renamed, so a crash or
    Ctrl-C never leaves a half-written checkpoint under the final name. With ``keep_backup``, the
    new file is parsed back (:func:`check_readable`) before it takes the name, and the previous one stays as
    ``<stem>.bak.ckpt`` (see :func:`mindresnet.fileio.atomic_path`).

    Raises:
        WriteError: the file could not be written (e.g. a full disk); the old file is unchanged.
    """
    if isinstance(params, ms.nn.Cell):
        save_obj: Any = params
    else:
        save_obj = [{"name": p.name, "data": p} for p in params]
    if meta is None and hasattr(params, "arch"):
        meta = CheckpointMeta.describe(params.arch, params.get_classifier().out_channels, params.stem,
                                       params.convention)
    append = {META_KEY: json.dumps(meta.to_dict())} if meta is not None else None
    verify = check_readable if keep_backup else None
    with atomic_path(path, ".ckpt", keep_backup=keep_backup, verify=verify) as tmp:  # ms appends .ckpt otherwise
        ms.save_checkpoint(save_obj, str(tmp), append_dict=append)
    return Path(path)


def check_readable(path: PathLike) -> None:
    """Parse the whole checkpoint at ``path`` without building its tensors (about half the time of
    loading it); a truncated or garbled file raises CheckpointError."""
    names: list = []

    def first_only(name: str) -> bool:  # one tensor is built, so the filter never leaves the load empty
        names.append(name)
        return len(names) == 1

    try:
        ms.load_checkpoint(str(path), choice_func=first_only)
    except Exception as exc:
        raise CheckpointError(f"Checkpoint {path} cannot be read back ({exc}); it was not written whole.") from exc


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
