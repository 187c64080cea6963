"""Build and load mindresnet's CPU kernels (``dnnl_conv.cc``, ``batch_norm.cc``) against MindSpore's oneDNN.

The C++ source sits beside this module. At the first ``import mindresnet`` on a machine it is
compiled with the system's C++ compiler (``$CXX``, else ``g++``) into the cache,
``$MINDRESNET_HOME/kernels/<key>/`` (``~/.cache/mindresnet/kernels/``), where ``key`` hashes the
sources, the compiler flags, this CPU's flags (the build targets it), MindSpore's version and oneDNN's version; the build runs under a
file lock and lands under a temporary name, so parallel msrun workers build it once and nobody
loads a half-written library. Later imports load the cached file (no compiler, no network).

The kernels are not used, with one log line saying why, when ``MINDRESNET_CPU_KERNELS=0``, on a
non-x86 machine, when MindSpore's ``libdnnl.so.3`` is not a version listed in
:data:`SUPPORTED_ONEDNN` (the kernels declare oneDNN's C API themselves, see ``dnnl_api.h``),
or when there is no compiler or the build fails. MindSpore's own kernels then run, as before.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Tuple

from mindresnet.cpu_isa import cpu_flags
from mindresnet.hub import cache_dir, file_lock
from mindresnet.parsing import FALSE_WORDS

logger = logging.getLogger(__name__)

ENABLE_ENV = "MINDRESNET_CPU_KERNELS"  # "0" turns mindresnet's CPU kernels off
SOURCES = ("dnnl_api.h", "thread_pool.h", "dnnl_conv.cc", "batch_norm.cc")
COMPILED = ("dnnl_conv.cc", "batch_norm.cc")
LIBRARY = "libmindresnet_cpu.so"
SUPPORTED_ONEDNN = ((3, 10),)  # oneDNN (major, minor) whose C API dnnl_api.h declares
# -march=native: the cache key holds this CPU's flags; -fopenmp-simd: vectorised reductions, no OpenMP runtime
CXXFLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-std=c++17", "-shared", "-fPIC", "-pthread")


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]


def mindspore_onednn() -> Path:
    """MindSpore's bundled ``libdnnl.so.3`` (found without importing MindSpore)."""
    import importlib.util
    spec = importlib.util.find_spec("mindspore")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MindSpore is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "lib" / "libdnnl.so.3"


def onednn_version(library: Path) -> Tuple[int, int, int]:
    """``(major, minor, patch)`` that ``library``'s ``dnnl_version()`` reports."""
    dnnl = ctypes.CDLL(str(library))
    dnnl.dnnl_version.restype = ctypes.POINTER(_Version)
    version = dnnl.dnnl_version().contents
    return version.major, version.minor, version.patch


def _mindspore_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("mindspore")
    except PackageNotFoundError:
        return "unknown"


def _compiler() -> Optional[str]:
    return shutil.which(os.environ.get("CXX") or "g++")


def cache_key(onednn: Tuple[int, int, int]) -> str:
    """Hash of everything the built library depends on: sources, flags, CPU flags, MindSpore and oneDNN versions."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in SOURCES:
        digest.update((here / name).read_bytes())
    digest.update(" ".join(CXXFLAGS).encode())
    digest.update(" ".join(sorted(cpu_flags())).encode())
    digest.update(f"mindspore {_mindspore_version()} onednn {onednn}".encode())
    return digest.hexdigest()[:16]


def build(compiler: str, onednn_lib: Path, dest: Path) -> None:
    """Compile the kernels into ``dest`` (atomically); CalledProcessError on a failed build."""
    here = Path(__file__).parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *CXXFLAGS, "-o", tmp, *(str(here / name) for name in COMPILED), str(onednn_lib),
                        f"-Wl,-rpath,{onednn_lib.parent}"], check=True, capture_output=True, text=True)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare() -> Tuple[Optional[Path], str]:
    """Build (once) and return the kernel library's path, or None; and a line saying what happened."""
    if os.environ.get(ENABLE_ENV, "1").strip().lower() in FALSE_WORDS:
        return None, f"mindresnet CPU kernels off ({ENABLE_ENV}=0): MindSpore's convolutions run"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None, f"mindresnet CPU kernels not used on {platform.machine()}: MindSpore's convolutions run"
    try:
        onednn_lib = mindspore_onednn()
        onednn = onednn_version(onednn_lib)
    except (OSError, FileNotFoundError, AttributeError) as exc:
        return None, f"mindresnet CPU kernels not used (MindSpore's oneDNN not found: {exc})"
    if onednn[:2] not in SUPPORTED_ONEDNN:
        return None, (f"mindresnet CPU kernels not used: MindSpore's oneDNN is {'.'.join(map(str, onednn))}, "
                      f"the kernels are written for {', '.join(f'{a}.{b}' for a, b in SUPPORTED_ONEDNN)}")
    compiler = _compiler()
    key = cache_key(onednn)
    dest = cache_dir() / "kernels" / key / LIBRARY
    if dest.exists():
        return dest, f"mindresnet CPU kernels loaded from {dest}"
    if compiler is None:
        return None, ("mindresnet CPU kernels not built: no C++ compiler (install g++ or set CXX); "
                      "MindSpore's convolutions run")
    try:
        with file_lock(dest):
            if not dest.exists():
                build(compiler, onednn_lib, dest)
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit {exc.returncode}"]
        return None, f"mindresnet CPU kernels failed to build ({reason[0]}); MindSpore's convolutions run"
    except OSError as exc:
        return None, f"mindresnet CPU kernels not built ({exc}); MindSpore's convolutions run"
    return dest, f"mindresnet CPU kernels built into {dest}"
