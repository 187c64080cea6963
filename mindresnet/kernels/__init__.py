"""mindresnet's CPU kernels: convolutions on oneDNN's blocked jit kernels, built on MindSpore's oneDNN.

:func:`load` (run by ``import mindresnet``) builds or loads the kernel library
(:mod:`~mindresnet.kernels.onednn`); :func:`use_cpu_kernels` switches a network's convolutions to
it (:mod:`~mindresnet.kernels.conv`). ``MINDRESNET_CPU_KERNELS=0`` keeps MindSpore's own kernels.
"""
import logging

from mindresnet.kernels.conv import (activate, frozen_weights, kernels_active, loaded_library, set_threads,
                                     use_cpu_kernels, use_native_kernels)
from mindresnet.kernels.onednn import ENABLE_ENV, prepare

logger = logging.getLogger(__name__)

_status: list = []  # the line load() logged


def load() -> bool:
    """Build or load the kernel library once per process; return whether the kernels are active."""
    if not _status:
        library, line = prepare()
        activate(library)
        _status.append(line)
        if library or line.startswith("mindresnet CPU kernels off"):
            logger.info(line)
        else:
            logger.warning(line)
    return kernels_active()


def status() -> str:
    """What :func:`load` did, in one line (for logs and benchmarks)."""
    return _status[0] if _status else "mindresnet CPU kernels not loaded yet"


__all__ = ["ENABLE_ENV", "frozen_weights", "kernels_active", "load", "loaded_library", "set_threads", "status",
           "use_cpu_kernels", "use_native_kernels"]
