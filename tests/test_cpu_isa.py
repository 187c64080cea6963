"""oneDNN's ISA cap: decided from the CPU flags, respects the user's, and no reference kernel ever runs."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mindresnet import cpu_isa

from conftest import REPO

# A train step and an inference of a small ResNet (both stems: the imagenet one has the max-pool),
# each in a fresh process so that oneDNN reads the cap that mindresnet set at import.
PROBE = """
import numpy as np, mindspore as ms
import mindresnet
from mindresnet import engine
from mindresnet.runtime import setup_context
setup_context("CPU", "graph")
for stem in ("imagenet", "cifar"):
    net = mindresnet.create_model("resnet18", num_classes=10, stem=stem)
    x = ms.Tensor(np.random.rand(2, 3, 32, 32).astype(np.float32))
    y = ms.Tensor(np.array([1, 2], np.int32))
    opt = engine.build_optimizer(net.trainable_params(), "momentum", [0.01], 0.9, 0.0)
    step = engine.build_train_step(net, engine.build_loss(0.0), opt)
    step(x, y)
    net.set_train(False)
    net(x)
"""


def cpuinfo_with(tmp_path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 {flags}\n")
    return str(path)


@pytest.mark.skipif(cpu_isa.platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 only")
@pytest.mark.parametrize("flags, user, expected_env, expected_text", [
    ("avx2 avx512f avx512bw", {}, "AVX2", "capped by mindresnet"),
    ("avx2 fma", {}, None, "no AVX-512"),
    ("avx2 avx512f", {"ONEDNN_MAX_CPU_ISA": "ALL"}, "ALL", "set by the user"),
    ("avx2 avx512f", {"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, None, "AVX512_CORE (set by the user)"),
])
def test_cap_decision(tmp_path, flags, user, expected_env, expected_text):
    environ = dict(user)
    decision = cpu_isa.apply_isa_cap(environ, cpuinfo_with(tmp_path, flags))
    assert expected_text in decision
    assert environ.get(cpu_isa.ISA_ENV) == expected_env
    assert environ.get(cpu_isa.LEGACY_ISA_ENV) == user.get(cpu_isa.LEGACY_ISA_ENV)


def test_cpu_facts_read_from_cpuinfo(tmp_path):
    info = cpuinfo_with(tmp_path, "avx2 avx512f")
    assert cpu_isa.cpu_model(info) == "Test CPU"
    assert cpu_isa.has_avx512(info)
    assert not cpu_isa.has_avx512(cpuinfo_with(tmp_path, "avx2"))
    assert cpu_isa.cpu_flags(str(tmp_path / "missing")) == set()


def executed_primitives(extra_env: dict) -> list:
    env = {k: v for k, v in os.environ.items() if k not in (cpu_isa.ISA_ENV, cpu_isa.LEGACY_ISA_ENV)}
    env.update(ONEDNN_VERBOSE="1", GLOG_v="3", **extra_env)
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if re.match(r"onednn_verbose,.*,exec,cpu,", line)]
    assert any(",convolution," in line for line in lines), "oneDNN ran no convolution: the probe is broken"
    return lines


def implementation(line: str) -> str:
    return line.split(",")[6]  # onednn_verbose,v1,primitive,exec,cpu,<kind>,<implementation>,...


def test_no_reference_kernel_in_train_step_or_inference():
    lines = executed_primitives({})
    reference = sorted({f"{line.split(',')[5]}: {implementation(line)}" for line in lines
                        if "ref" in implementation(line)})
    assert not reference, f"oneDNN ran reference kernels: {reference}"
    kinds = {line.split(",")[5] for line in lines}
    assert {"convolution", "pooling"} <= kinds, kinds


@pytest.mark.skipif(not cpu_isa.has_avx512(), reason="only AVX-512 CPUs fall back to oneDNN's reference kernel")
def test_without_the_cap_this_cpu_runs_reference_kernels():
    """What the cap prevents: the check above would fail here without it."""
    lines = executed_primitives({cpu_isa.ISA_ENV: "ALL"})
    assert any("ref" in implementation(line) for line in lines if ",convolution," in line)
