"""Keep MindSpore's own convolutions off oneDNN's reference kernels on AVX-512 CPUs (the fallback's guard).

MindSpore 2.10 bundles oneDNN v3.10.1. On a CPU with AVX-512 it runs every plain-NCHW
convolution as ``jit_uni_ncsp:conv+ref:any``, the reference kernel (about 100x slower); capped
at AVX2 it picks ``x64:gemm:jit`` again (bench/README.md, "AVX-512"). mindresnet's own CPU
kernels (:mod:`mindresnet.kernels`) ask oneDNN for blocked layouts and need no cap, so the cap
is applied only when they are not loaded. oneDNN reads its ISA cap from ``ONEDNN_MAX_CPU_ISA``
(or ``DNNL_MAX_CPU_ISA``) once, when it first dispatches a kernel, so :func:`apply_isa_cap` sets
it in this process's environment at ``import mindresnet``, before any MindSpore kernel runs.
Child processes (msrun workers, data workers) inherit it.

A cap the user set (either spelling) is left as it is; ``ONEDNN_MAX_CPU_ISA=ALL`` turns the cap
off. CPUs without AVX-512 (and non-x86 machines) are left untouched.
"""
from __future__ import annotations

import os
import platform
from typing import Optional

ISA_ENV = "ONEDNN_MAX_CPU_ISA"
LEGACY_ISA_ENV = "DNNL_MAX_CPU_ISA"
CAP = "AVX2"  # the widest ISA at which oneDNN 3.10 still picks its jit GEMM convolution
CPUINFO = "/proc/cpuinfo"
AVX512_CAPS = ("ALL", "AVX512", "AVX10")  # oneDNN cap values (prefixes) that leave its AVX-512 kernels on

_applied: list = []  # what apply_isa_cap decided for this process, for isa_report()


def cpu_flags(cpuinfo: str = CPUINFO) -> set:
    """The feature flags of the first CPU listed in ``cpuinfo`` (empty when unreadable)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model(cpuinfo: str = CPUINFO) -> str:
    """The CPU's model name (``platform.processor()`` where /proc/cpuinfo is unreadable)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_avx512(cpuinfo: str = CPUINFO) -> bool:
    """Whether the CPU reports AVX-512 (the ``avx512f`` foundation flag)."""
    return "avx512f" in cpu_flags(cpuinfo)


def user_isa(environ: Optional[dict] = None) -> Optional[str]:
    """The ISA cap the user set, under either spelling (``ONEDNN_`` wins), or None."""
    environ = os.environ if environ is None else environ
    return environ.get(ISA_ENV) or environ.get(LEGACY_ISA_ENV) or None


def avx512_in_effect(environ: Optional[dict] = None, cpuinfo: str = CPUINFO) -> bool:
    """Whether oneDNN may run AVX-512 kernels here: the CPU has AVX-512 and the user set no cap below it
    (such as ``ONEDNN_MAX_CPU_ISA=AVX2``)."""
    cap = (user_isa(environ) or "ALL").upper()
    return has_avx512(cpuinfo) and cap.startswith(AVX512_CAPS)


def apply_isa_cap(environ: Optional[dict] = None, cpuinfo: str = CPUINFO, own_kernels: bool = False) -> str:
    """Cap oneDNN at AVX2 on AVX-512 x86 CPUs unless the user chose a cap or ``own_kernels`` run the
    convolutions; return what was decided.

    Must run before MindSpore dispatches its first CPU kernel (``import mindresnet`` does it).
    """
    environ = os.environ if environ is None else environ
    chosen = user_isa(environ)
    if chosen:
        decision = f"{chosen} (set by the user)"
    elif platform.machine().lower() not in ("x86_64", "amd64") or not has_avx512(cpuinfo):
        decision = "all (no AVX-512: no cap needed)"
    elif own_kernels:
        decision = "all (mindresnet's oneDNN kernels run the convolutions)"
    else:
        environ[ISA_ENV] = CAP
        decision = f"{CAP} (capped by mindresnet on this AVX-512 CPU; {ISA_ENV}=ALL turns it off)"
    if environ is os.environ:
        _applied[:] = [decision]
    return decision


def isa_report() -> str:
    """One line for logs and benchmarks: CPU model, AVX-512 or not, the oneDNN ISA cap in effect."""
    cap = _applied[0] if _applied else (user_isa() or "none")
    return f"CPU {cpu_model()} ({'AVX-512' if has_avx512() else 'no AVX-512'}), oneDNN ISA cap {cap}"
