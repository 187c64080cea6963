"""MindSpore execution context: graph mode, device target and CPU threads, applied in one place."""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from typing import Iterator, Optional

import mindspore as ms
import numpy as np

from mindresnet.cpu_isa import isa_report
from mindresnet.errors import DeviceError
from mindresnet.kernels import set_threads as set_kernel_threads, status as kernel_status

logger = logging.getLogger(__name__)

DEVICES = ("Ascend", "GPU", "CPU")
COMPILER_DUMPS = "MS_OM_PATH"  # where MindSpore writes rank_0/om/analyze_fail.ir when a graph fails to compile
_USER_DUMPS = os.environ.get(COMPILER_DUMPS)
DEFAULT_DUMPS = os.path.join(tempfile.gettempdir(), "mindresnet-ir")


@contextlib.contextmanager
def in_dumps_folder() -> Iterator[str]:
    """Run the block in the compiler dumps folder (``$MS_OM_PATH``, see :func:`setup_context`), not the
    working directory: MindSpore's AMP rewrite (``--amp O1``) writes the network it rewrites to
    ``rewritten_network/`` under the working directory, and its graph compiles from those files."""
    folder = os.environ.get(COMPILER_DUMPS) or DEFAULT_DUMPS
    os.makedirs(folder, exist_ok=True)
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(previous)


def cpu_count() -> int:
    """Cores this process may really use (respects affinity masks and cgroup-limited sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def pad_rows(rows: np.ndarray, size: int, fill=0) -> np.ndarray:
    """``rows`` with its first axis filled up to ``size`` with ``fill``. Graph mode compiles a network once per
    input shape: a short last batch padded to the full size reuses the graph of the others."""
    missing = size - len(rows)
    if missing <= 0:
        return rows
    return np.concatenate([rows, np.full((missing, *rows.shape[1:]), fill, rows.dtype)])


def normalize_device(device: str) -> str:
    """Map ``ascend``/``gpu``/``cpu`` (any case) to MindSpore's spelling, or raise DeviceError."""
    for name in DEVICES:
        if str(device).lower() == name.lower():
            return name
    raise DeviceError(f"--device {device!r} is not one of {', '.join(DEVICES)}.")


def setup_context(device: str = "CPU", mode: str = "graph", threads: int | None = None,
                  dump_dir: Optional[str] = None) -> str:
    """Set MindSpore's mode and device target; on CPU, use as many kernel threads as there are cores.

    Args:
        device: ``Ascend``, ``GPU`` or ``CPU``.
        mode: ``graph`` (default, compiled) or ``pynative``.
        threads: CPU kernel threads; defaults to :func:`cpu_count`.
        dump_dir: where MindSpore's compile-failure reports (``rank_0/om/analyze_fail.ir``) go instead
            of the working directory; default: ``$MS_OM_PATH`` if set, else ``<tmp>/mindresnet-ir``.

    Returns:
        The device target MindSpore runs on.

    Raises:
        DeviceError: the device is unknown, or this MindSpore install cannot use it.
    """
    target = normalize_device(device)
    os.environ[COMPILER_DUMPS] = _USER_DUMPS or str(dump_dir or DEFAULT_DUMPS)
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        ms.set_device(target)
    except Exception as exc:  # MindSpore raises RuntimeError/ValueError depending on the backend
        raise DeviceError(
            f"--device {target}: MindSpore {ms.__version__} cannot use this device ({exc}). "
            f"Install the MindSpore build for {target} and its drivers, or pass --device CPU."
        ) from exc
    if target == "CPU":
        _set_cpu_threads(threads or cpu_count())
        logger.info("%s; %s; %d kernel threads", isa_report(), kernel_status(), threads or cpu_count())
    else:
        _check_backend(target)
    return target


def _set_cpu_threads(threads: int) -> None:
    # MindSpore's default of 25 kernel threads oversubscribes small machines: on 2 cores, ResNet-50
    # 32x32 b32 training went from 56 to 70 img/s with 2 threads.
    # The setting may only be applied once per process.
    try:
        ms.device_context.cpu.op_tuning.threads_num(threads)
    except RuntimeError:
        pass
    set_kernel_threads(threads)


def _check_backend(target: str) -> None:
    # set_device() accepts any known name; whether the plugin really loads shows here.
    try:
        available = ms.hal.is_available(target)
    except Exception:  # older/other builds without the query
        return
    if not available:
        raise DeviceError(
            f"--device {target}: MindSpore {ms.__version__} found no usable {target} backend "
            f"(plugin, driver or runtime libraries missing). Install them, or pass --device CPU."
        )
