"""What each side of a benchmark runs on: CPU, AVX-512 or not, oneDNN ISA, threads (benchmark only).

``import mindresnet`` caps MindSpore's oneDNN at AVX2 on AVX-512 CPUs by setting
``ONEDNN_MAX_CPU_ISA`` in ``os.environ`` (mindresnet/cpu_isa.py). PyTorch bundles its own oneDNN,
which reads the same variable when it first dispatches a kernel; capped at AVX2 it runs ResNet-50
at about 60% of its speed on an AVX-512 CPU. So the PyTorch side of every benchmark runs in its
own process started with :func:`torch_env` (the cap removed), or calls :func:`uncap_torch` before
its first kernel when it must import mindresnet's data readers; :func:`torch_side` then reports
the ISA its oneDNN really dispatches (from oneDNN's verbose header), not the one it was asked for.
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Optional

REPO = Path(__file__).resolve().parents[1]
ISA_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def cpu_count() -> int:
    """Cores this process may use (affinity-aware), as ``mindresnet.runtime.cpu_count``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def torch_env(environ: Optional[Mapping[str, str]] = None) -> dict:
    """A copy of ``environ`` (default: this process's) without any oneDNN ISA cap, for PyTorch processes."""
    environ = os.environ if environ is None else environ
    return {key: value for key, value in environ.items() if key not in ISA_VARS}


def uncap_torch() -> None:
    """Drop the oneDNN ISA cap from this process's environment before PyTorch dispatches its first kernel.

    For a PyTorch process that imported mindresnet (its data readers, its LR schedule) but runs no
    MindSpore kernel: PyTorch's oneDNN reads the variable lazily, at its first primitive.
    """
    for key in ISA_VARS:
        os.environ.pop(key, None)


def omp_line() -> str:
    """``OMP_NUM_THREADS=...`` (and ``MKL_NUM_THREADS``) as set in the environment, or 'unset'."""
    found = [f"{key}={os.environ[key]}" for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if key in os.environ]
    return ", ".join(found) or "OMP_NUM_THREADS unset"


def mindspore_side(threads: Optional[int] = None) -> str:
    """One line for a process that imported mindresnet: MindSpore version, ``isa_report()``, threads."""
    import mindspore as ms

    sys.path.insert(0, str(REPO))
    from mindresnet import kernels
    from mindresnet.cpu_isa import isa_report

    threads = threads or cpu_count()
    return (f"MindSpore {ms.__version__}: {isa_report()}; {kernels.status()}; {threads} CPU kernel threads "
            f"(op_tuning.threads_num); {omp_line()}")


def torch_onednn_isa() -> str:
    """The ISA PyTorch's oneDNN dispatches on, read from its verbose header after one tiny convolution.

    Call it before any other PyTorch convolution: oneDNN prints the header only once per process.
    """
    import torch

    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = os.dup(1)
        sys.stdout.flush()
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.nn.functional.conv2d(torch.ones(2, 3, 8, 8), torch.ones(4, 3, 3, 3))
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
    for line in text.splitlines():
        if ",isa:" in line:
            return line.split(",isa:", 1)[1].strip()
    return "unknown (no oneDNN verbose header)"


def torch_side() -> str:
    """One line for a PyTorch process: version, ATen CPU capability, oneDNN ISA, cap in env, threads."""
    import torch

    cap = ", ".join(f"{key}={os.environ[key]}" for key in ISA_VARS if key in os.environ) or "no ISA cap in env"
    return (f"PyTorch {torch.__version__}: ATen CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"oneDNN ISA {torch_onednn_isa()} ({cap}); {torch.get_num_threads()} intra-op / "
            f"{torch.get_num_interop_threads()} inter-op threads; {omp_line()}")


def cpu_line() -> str:
    """The machine: CPU model, AVX-512 or not, usable cores (read from /proc/cpuinfo; no import of MindSpore)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name") and model == (platform.processor() or platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    avx = "AVX-512" if "avx512f" in flags else ("AVX2, no AVX-512" if "avx2" in flags else "no AVX2")
    return f"CPU {model} ({avx}), {cpu_count()} usable cores"


def save_both_sides(net, meta, folder: Path, torch_python: str) -> "tuple[Path, Path]":
    """The same weights twice: a mindresnet ``.ckpt`` with ``meta`` and the PyTorch twin's ``.pt``.

    The ``.pt`` holds ``{"state_dict", "meta"}`` (``meta`` as a plain dict) and is written by
    ``torch_python`` in a process without the oneDNN cap.
    """
    import json
    import subprocess

    import numpy as np

    from mindresnet.checkpoint import save_checkpoint

    ckpt = save_checkpoint(net, folder / f"{meta.arch}.ckpt", meta)
    arrays = folder / "weights.npz"
    np.savez(arrays, **{p.name: p.asnumpy() for p in net.get_parameters()})
    torch_ckpt = folder / f"{meta.arch}.pt"
    convert = ("import sys, json, numpy as np, torch; sys.path.insert(0, sys.argv[1]); "
               "from torch_resnet import state_dict_from_mindspore; "
               "torch.save({'state_dict': state_dict_from_mindspore(dict(np.load(sys.argv[2]))), "
               "'meta': json.loads(sys.argv[3])}, sys.argv[4])")
    subprocess.run([torch_python, "-c", convert, str(Path(__file__).resolve().parent), str(arrays),
                    json.dumps(meta.to_dict()), str(torch_ckpt)], check=True, env=torch_env())
    return ckpt, torch_ckpt
