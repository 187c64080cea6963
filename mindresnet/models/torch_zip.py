"""Reading PyTorch ``.pth``/``.pt`` files without torch: the zip format, tensors only.

``torch.save`` (torch >= 1.6) writes a zip holding ``<name>/data.pkl``, a pickle of the saved
object in which every tensor is a call of ``torch._utils._rebuild_tensor_v2`` on a storage kept
as the raw record ``<name>/data/<key>``. :func:`read_torch_file` unpickles ``data.pkl`` with an
unpickler that knows only those few names (the tensor rebuild functions, the storage types and
``collections.OrderedDict``) and rebuilds each tensor as a numpy array from its storage, offset,
shape and stride. Any other global in the pickle (a class, a function such as ``os.system``) is
refused before anything runs. numpy has no bfloat16: such tensors come back widened to float32,
exactly.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from mindresnet.errors import CheckpointError

BFLOAT16 = "bfloat16"
STORAGE_DTYPES = {  # torch.<name>Storage -> numpy dtype of its elements (little-endian unless marked)
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": BFLOAT16,
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pickled 0x1950a86a20f9469cfc6c


class _StorageType:
    """Stands for ``torch.<name>Storage`` in the pickle; deliberately not callable."""

    def __init__(self, name: str):
        self.name = name


class _Storage:
    """One storage record: a flat array of its elements."""

    def __init__(self, array: np.ndarray):
        self.array = array


def read_torch_file(path: Path) -> Any:
    """The object saved in the PyTorch zip file ``path``, with every tensor as a numpy array.

    Raises:
        CheckpointError: naming ``path``: not a zip written by ``torch.save`` (a legacy-format,
            truncated or foreign file), or a pickle that holds anything but tensors, containers
            and plain values.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(len(LEGACY_MAGIC))
    if head == LEGACY_MAGIC:
        raise CheckpointError(
            f"{path} is in PyTorch's legacy (pre-1.6, non-zip) format, which is not read without torch. "
            "Re-save it with a recent torch (torch.save(torch.load(path), new_path)) or as .safetensors.")
    try:
        with zipfile.ZipFile(path) as archive:
            return _unpickle(path, archive)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} cannot be read as a PyTorch weights file ({exc}). The file is truncated "
                              "or not a .pth; copy or download it again.") from exc


def _unpickle(path: Path, archive: zipfile.ZipFile) -> Any:
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        raise ValueError("no <name>/data.pkl record, so not written by torch.save")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in archive.namelist() else "little"
    if byteorder not in ("little", "big"):
        raise ValueError(f"unknown byte order {byteorder!r}")
    endian = "<" if byteorder == "little" else ">"
    storages: Dict[str, _Storage] = {}

    def load_storage(pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"persistent id {pid!r} is not a storage")
        storage_type, key, numel = pid[1], _text(pid[2]), pid[4]
        if key not in storages:
            storages[key] = _Storage(_storage_array(archive.read(f"{prefix}data/{key}"), storage_type.name,
                                                    endian, numel))
        return storages[key]

    return _TensorUnpickler(io.BytesIO(archive.read(pickles[0])), path, load_storage).load()


class _TensorUnpickler(pickle.Unpickler):
    """An unpickler that can build tensors, ordered dicts and plain values, and nothing else."""

    def __init__(self, file, path: Path, load_storage):
        super().__init__(file)
        self._path = path
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in REBUILDERS:
            return REBUILDERS[module, name]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(
            f"Refusing {self._path}: its pickle asks for {module}.{name}, and a weights file holds only "
            "tensors; unpickling it could run arbitrary code. Re-save the weights with "
            "torch.save(model.state_dict(), ...) or as .safetensors.")

    def persistent_load(self, pid: Any) -> Any:
        return self._load_storage(pid)


def _storage_array(data: bytes, type_name: str, endian: str, numel: Any) -> np.ndarray:
    bfloat16 = STORAGE_DTYPES[type_name] == BFLOAT16
    dtype = np.dtype(endian + ("u2" if bfloat16 else STORAGE_DTYPES[type_name]))
    if not isinstance(numel, int) or numel < 0 or len(data) < numel * dtype.itemsize:
        raise ValueError(f"a {type_name} record of {len(data)} bytes cannot hold {numel} elements")
    array = np.frombuffer(data, dtype=dtype, count=numel)
    if bfloat16:  # the upper half of a float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: the strided view of ``storage``, copied."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    if backward_hooks or metadata:
        raise pickle.UnpicklingError("a tensor with backward hooks or conj/neg bits")
    shape, steps = _ints(size), _ints(stride)
    if not isinstance(offset, int) or offset < 0 or len(shape) != len(steps) or min(steps, default=0) < 0:
        raise pickle.UnpicklingError(f"a tensor of offset {offset!r}, size {size!r}, stride {stride!r}")
    flat = storage.array
    if 0 in shape:
        return np.empty(shape, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(shape, steps))
    if last >= flat.size:
        raise pickle.UnpicklingError(f"a tensor reaching element {last} of a storage of {flat.size}")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=shape,
                                           strides=tuple(s * flat.itemsize for s in steps), writeable=False)
    return np.array(view)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> np.ndarray:
    """``torch._utils._rebuild_parameter``: a parameter is its tensor."""
    if not isinstance(data, np.ndarray) or backward_hooks:
        raise pickle.UnpicklingError("a parameter that is not a plain tensor")
    return data


def _ints(values: Any) -> Tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise pickle.UnpicklingError(f"{values!r} is not a tuple of sizes")
    return tuple(values)


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


REBUILDERS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
