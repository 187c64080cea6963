"""Reading and writing ``.ckpt`` files: atomic writes, metadata, clear errors on bad files.

Training stores a :class:`~mindresnet.checkpoint_meta.CheckpointMeta` as JSON under
:data:`META_KEY`, so evaluation, prediction, export and resume only need the checkpoint.
"""
from __future__ import annotations

import functools
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
    new file's records are walked back (:func:`check_readable`) before it takes the name, and the
    previous one stays as ``<stem>.bak.ckpt`` (see :func:`mindresnet.fileio.atomic_path`).

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
    verify = functools.partial(check_readable, last_name=META_KEY if append else None) if keep_backup else None
    with atomic_path(path, ".ckpt", keep_backup=keep_backup, verify=verify) as tmp:  # ms appends .ckpt otherwise
        ms.save_checkpoint(save_obj, str(tmp), append_dict=append)
    return Path(path)


def check_readable(path: PathLike, last_name: Optional[str] = None) -> None:
    """Walk the records of the checkpoint at ``path`` without reading its tensors into memory.

    A ``.ckpt`` is a run of protobuf ``Checkpoint`` messages, one record (a parameter's name and its
    tensor) each. The walk reads each record's header and name and seeks past its
    tensor, so it costs a few KiB whatever the file's size (parsing it whole with
    ``mindspore.load_checkpoint`` took 1.8x the file in memory). A file that is empty, cut short,
    whose record headers are garbled, or whose last record is not ``last_name`` raises CheckpointError.
    """
    size = Path(path).stat().st_size
    name = None
    with open(path, "rb") as stream:
        while stream.tell() < size:
            start = stream.tell()
            if stream.read(1) != _VALUE_KEY:
                raise CheckpointError(f"Checkpoint {path} cannot be read back (no record at byte {start}); "
                                      "it was not written whole.")
            length = _read_varint(stream, path)
            end = stream.tell() + length
            if end > size:
                raise CheckpointError(f"Checkpoint {path} cannot be read back (its record at byte {start} "
                                      f"runs {end - size} bytes past the end); it was not written whole.")
            name = _record_name(stream, path, length)
            stream.seek(end)
    if name is None:
        raise CheckpointError(f"Checkpoint {path} cannot be read back (it holds no record); it was not written whole.")
    if last_name is not None and name != last_name:
        raise CheckpointError(f"Checkpoint {path} cannot be read back (its last record is {name!r}, not "
                              f"{last_name!r}); it was not written whole.")


_VALUE_KEY = b"\x0a"  # field 1 (Checkpoint.value, Value.tag), wire type 2 (length-delimited)


def _read_varint(stream, path: PathLike) -> int:
    value, shift = 0, 0
    while shift < 64:
        byte = stream.read(1)
        if not byte:
            break
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise CheckpointError(f"Checkpoint {path} cannot be read back (a record length is cut or garbled at byte "
                          f"{stream.tell()}); it was not written whole.")


def _record_name(stream, path: PathLike, length: int) -> str:
    """The ``tag`` of the Value record of ``length`` bytes that starts at the stream's position."""
    start = stream.tell()
    if stream.read(1) != _VALUE_KEY:
        raise CheckpointError(f"Checkpoint {path} cannot be read back (the record at byte {start} has no "
                              "name); it was not written whole.")
    size = _read_varint(stream, path)
    if stream.tell() + size > start + length:
        raise CheckpointError(f"Checkpoint {path} cannot be read back (the record name at byte {start} runs "
                              "past its record); it was not written whole.")
    return stream.read(size).decode("utf-8", errors="replace")


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
