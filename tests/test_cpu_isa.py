"""oneDNN's ISA cap: decided from the CPU flags and the kernels, respects the user's; no reference kernel
ever runs, and the convolutions run oneDNN's blocked jit kernels."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mindresnet import cpu_isa, kernels

from conftest import REPO

# A train step and an inference of small ResNets (both stems: the imagenet one has the max-pool; a bottleneck one),
# each in a fresh process so that oneDNN reads the cap that mindresnet set at import.
PROBE = """
import numpy as np, mindspore as ms
import mindresnet
from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer
from mindresnet.training.step import build_train_step
from mindresnet.runtime import setup_context
setup_context("CPU", "graph")
from mindresnet.models import ResidualBlock, ResNet
nets = [mindresnet.create_model("resnet18", num_classes=10, stem=stem) for stem in ("imagenet", "cifar")]
for net in nets + [ResNet(ResidualBlock, (1, 1, 1, 1), num_classes=10)]:  # and 1x1 stride-1 convolutions
    x = ms.Tensor(np.random.rand(2, 3, 32, 32).astype(np.float32))
    y = ms.Tensor(np.array([1, 2], np.int32))
    opt = build_optimizer(net.trainable_params(), "momentum", [0.01], 0.9, 0.0)
    step = build_train_step(net, build_loss(0.0), opt)
    step(x, y)
    net.set_train(False)
    net(x)
"""


def cpuinfo_with(tmp_path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 {flags}\n")
    return str(path)


@pytest.mark.skipif(cpu_isa.platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 only")
@pytest.mark.parametrize("flags, user, own_kernels, expected_env, expected_text", [
    ("avx2 avx512f avx512bw", {}, False, "AVX2", "capped by mindresnet"),
    ("avx2 avx512f avx512bw", {}, True, None, "mindresnet's oneDNN kernels run the convolutions"),
    ("avx2 fma", {}, False, None, "no AVX-512"),
    ("avx2 avx512f", {"ONEDNN_MAX_CPU_ISA": "ALL"}, False, "ALL", "set by the user"),
    ("avx2 avx512f", {"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, True, None, "AVX512_CORE (set by the user)"),
])
def test_cap_decision(tmp_path, flags, user, own_kernels, expected_env, expected_text):
    environ = dict(user)
    decision = cpu_isa.apply_isa_cap(environ, cpuinfo_with(tmp_path, flags), own_kernels=own_kernels)
    assert expected_text in decision
    assert environ.get(cpu_isa.ISA_ENV) == expected_env
    assert environ.get(cpu_isa.LEGACY_ISA_ENV) == user.get(cpu_isa.LEGACY_ISA_ENV)


def test_cpu_facts_read_from_cpuinfo(tmp_path):
    info = cpuinfo_with(tmp_path, "avx2 avx512f")
    assert cpu_isa.cpu_model(info) == "Test CPU"
    assert cpu_isa.has_avx512(info)
    assert not cpu_isa.has_avx512(cpuinfo_with(tmp_path, "avx2"))
    assert cpu_isa.cpu_flags(str(tmp_path / "missing")) == set()


@pytest.mark.parametrize("flags, user, expected", [
    ("avx2 avx512f", {}, True),
    ("avx2 avx512f", {"ONEDNN_MAX_CPU_ISA": "all"}, True),
    ("avx2 avx512f", {"DNNL_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, True),
    ("avx2 avx512f", {"ONEDNN_MAX_CPU_ISA": "AVX10_1_512"}, True),
    ("avx2 avx512f", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),  # the AVX2-class routes apply
    ("avx2 avx512f", {"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"}, False),
    ("avx2 fma", {}, False),
])
def test_avx512_in_effect_follows_the_users_cap(tmp_path, flags, user, expected):
    assert cpu_isa.avx512_in_effect(user, cpuinfo_with(tmp_path, flags)) is expected


def executed_primitives(extra_env: dict) -> list:
    env = {k: v for k, v in os.environ.items() if k not in (cpu_isa.ISA_ENV, cpu_isa.LEGACY_ISA_ENV)}
    env.update(ONEDNN_VERBOSE="1", GLOG_v="3", **extra_env)
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if re.match(r"onednn_verbose,.*,exec,cpu,", line)]
    assert any(",convolution," in line for line in lines), "oneDNN ran no convolution: the probe is broken"
    return lines


@pytest.fixture(scope="module")
def default_run() -> list:
    """The probe's oneDNN primitives as mindresnet runs by default (one probe for the tests that read it)."""
    return executed_primitives({})


def implementation(line: str) -> str:
    return line.split(",")[6]  # onednn_verbose,v1,primitive,exec,cpu,<kind>,<implementation>,...


def test_no_reference_kernel_in_train_step_or_inference(default_run):
    lines = default_run
    reference = sorted({f"{line.split(',')[5]}: {implementation(line)}" for line in lines
                        if "ref" in implementation(line)})
    assert not reference, f"oneDNN ran reference kernels: {reference}"
    kinds = {line.split(",")[5] for line in lines}
    assert {"convolution", "pooling"} <= kinds, kinds


@pytest.mark.skipif(not kernels.kernels_active(), reason=f"kernels not active: {kernels.status()}")
def test_convolutions_run_blocked_jit_kernels(default_run):
    """Forward, input and weight gradients of every convolution: oneDNN's jit/brgemm kernels, not GEMM or ref;
    except that without AVX-512 the 1x1 stride-1 ones run its GEMM convolution on the plain layout
    (``kernels.conv.PLAIN_POINTWISE``, measured faster there)."""
    lines = [line for line in default_run if ",convolution," in line]
    pointwise = {line for line in lines if "kh1sh1" in line and "kw1sw1" in line}
    plain = pointwise if not cpu_isa.avx512_in_effect({}) else set()  # PLAIN_POINTWISE in the probe (no cap)
    blocked = {implementation(line) for line in lines if line not in plain}
    assert all(impl.startswith(("jit", "brg")) for impl in blocked), blocked
    assert pointwise and all("gemm" in implementation(line) for line in plain), {implementation(line) for line in plain}
    passes = {line.split(",")[7] for line in lines}
    assert {"forward_training", "backward_data", "backward_weights"} <= passes, passes


@pytest.mark.skipif(not cpu_isa.has_avx512(), reason="only AVX-512 CPUs fall back to oneDNN's reference kernel")
def test_mindsporeS_convolutions_without_the_cap_run_reference_kernels():
    """What the cap guards against when the kernels are off: the first check would fail without it."""
    lines = executed_primitives({cpu_isa.ISA_ENV: "ALL", "MINDRESNET_CPU_KERNELS": "0"})
    assert any("ref" in implementation(line) for line in lines if ",convolution," in line)


def test_without_the_kernels_no_reference_kernel_either():
    lines = executed_primitives({"MINDRESNET_CPU_KERNELS": "0"})
    assert not [line for line in lines if "ref" in implementation(line)]
