"""Reading weights files of every supported format: MindSpore ``.ckpt``, PyTorch ``.pth``/``.pt``, ``.safetensors``.

PyTorch files are read without torch by :mod:`mindresnet.models.torch_zip`, which rebuilds tensors
only: a file whose pickle holds anything else (which could run arbitrary code) is refused.
``.safetensors`` files are read with the ``safetensors`` package's numpy reader (optional, imported
only when such a file is read).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import mindspore as ms

from mindresnet.checkpoint import read_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.errors import CheckpointError
from mindresnet.models.torch_zip import read_torch_file

TORCH_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"
SUFFIXES = (".ckpt",) + TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)
STATE_DICT_KEYS = ("state_dict", "model", "module")  # where training scripts nest the weights

Params = Dict[str, Union[ms.Parameter, ms.Tensor]]


def read_weights(path: Union[str, os.PathLike]) -> Tuple[Params, Optional[CheckpointMeta]]:
    """``(parameters by name as stored, mindresnet metadata or None)`` of a weights file.

    Raises:
        CheckpointError: missing, empty or unreadable file, unsupported suffix, a PyTorch file that
            is not a plain state dict, or safetensors is not installed for a ``.safetensors`` file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,):
        return read_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {path} does not exist. Check the path.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Weights file {path} is empty (0 bytes). Copy or download it again.")
    arrays = _read_safetensors(path) if suffix == SAFETENSORS_SUFFIX else _read_torch(path)
    params = {name: ms.Tensor(value) for name, value in arrays.items()}
    if not params:
        raise CheckpointError(f"Weights file {path} holds no tensors.")
    return params, None


def _read_safetensors(path: Path) -> Dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise CheckpointError(f"Reading {path} needs the safetensors package: pip install safetensors "
                              "(torch is not needed).") from None
    try:
        return {name: _as_float32(value) for name, value in load_file(str(path)).items()}
    except Exception as exc:  # the reader raises its own error types
        raise CheckpointError(f"{path} cannot be read as .safetensors ({exc}). The file is truncated or "
                              "not a safetensors file; copy or download it again.") from exc


def _read_torch(path: Path) -> Dict[str, np.ndarray]:
    loaded = read_torch_file(path)
    state = _state_dict(loaded)
    if state is None:
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors.")
    return {name: _as_float32(value) for name, value in state.items()
            if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)}


def _state_dict(loaded: Any) -> Any:
    """The name -> tensor mapping in ``loaded``, unwrapping ``{"state_dict": ...}``-style nesting."""
    if not isinstance(loaded, Mapping):
        return None
    for key in STATE_DICT_KEYS:
        if isinstance(loaded.get(key), Mapping):
            return loaded[key]
    return loaded


def _as_float32(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=np.float32)
