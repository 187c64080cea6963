"""Building and loading the CPU kernels: cached per key, built once under a lock, and a clear
fallback to MindSpore's own kernels (one log line) when they cannot be used."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mindresnet import cpu_isa
from mindresnet.kernels import onednn

from conftest import REPO

PROBE = """
import os, numpy as np, mindspore as ms
import mindresnet
from mindresnet import kernels
from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer
from mindresnet.training.step import build_train_step
from mindresnet.runtime import setup_context
setup_context("CPU")
net = mindresnet.create_model("resnet18", num_classes=10)
kinds = sorted({type(c).__name__ for _, c in net.cells_and_names() if "Conv2d" in type(c).__name__})
opt = build_optimizer(net.trainable_params(), "momentum", [0.01], 0.9, 0.0)
loss = build_train_step(net, build_loss(), opt)(
    ms.Tensor(np.ones((2, 3, 32, 32), np.float32)), ms.Tensor(np.array([1, 2], np.int32)))
print("KINDS", ",".join(kinds), "ACTIVE", kernels.kernels_active(), "CAP", os.environ.get("ONEDNN_MAX_CPU_ISA"),
      "LOSS", float(loss.asnumpy()))
"""


@pytest.fixture(autouse=True)
def kernels_switch_unset(monkeypatch):
    """Each test sets MINDRESNET_CPU_KERNELS itself: a suite run with the kernels off must not decide for it."""
    monkeypatch.delenv(onednn.ENABLE_ENV, raising=False)


def run_probe(env_changes: dict, home) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (cpu_isa.ISA_ENV, cpu_isa.LEGACY_ISA_ENV)}
    env.update(MINDRESNET_HOME=str(home), GLOG_v="3", **env_changes)
    return subprocess.Popen([sys.executable, "-c", PROBE], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc) -> tuple:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out.split("KINDS", 1)[1].split(), err


def test_built_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path))
    library, line = onednn.prepare()
    assert library is not None and library.is_file() and "built into" in line
    assert library.parent.parent == tmp_path / "kernels"
    again, line = onednn.prepare()
    assert again == library and "loaded from" in line
    assert [p.name for p in library.parent.iterdir()] == [onednn.LIBRARY]  # the build lock is gone


def test_cache_key_follows_sources_and_versions(monkeypatch):
    key = onednn.cache_key((3, 10, 1))
    assert onednn.cache_key((3, 10, 2)) != key
    monkeypatch.setattr(onednn, "_mindspore_version", lambda: "9.9.9")
    assert onednn.cache_key((3, 10, 1)) != key


@pytest.mark.parametrize("env, version, expected", [
    ({onednn.ENABLE_ENV: "0"}, None, "off (MINDRESNET_CPU_KERNELS=0)"),
    ({"CXX": "/nonexistent/g++"}, None, "no C++ compiler"),
    ({"CXX": "/bin/false"}, None, "failed to build"),
    ({}, (3, 13, 0), "MindSpore's oneDNN is 3.13.0"),
])
def test_fallback_says_why(tmp_path, monkeypatch, env, version, expected):
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if version:
        monkeypatch.setattr(onednn, "onednn_version", lambda library: version)
    library, line = onednn.prepare()
    assert library is None and expected in line
    assert not list((tmp_path / "kernels").rglob("*.so"))  # nothing half-built left behind


def test_parallel_processes_build_once_and_train_on_the_kernels(tmp_path):
    probes = [run_probe({}, tmp_path) for _ in range(2)]
    for proc in probes:
        fields, _ = finish(proc)
        assert fields[0] == "OneDnnConv2d" and fields[2] == "True"
        assert fields[4] == "None"  # no ISA cap: no MindSpore convolution is left on the path
    built = list((tmp_path / "kernels").rglob("*"))
    assert [p.name for p in built if p.is_file()] == [onednn.LIBRARY]


@pytest.mark.parametrize("env", [{onednn.ENABLE_ENV: "0"}, {"CXX": "/nonexistent/g++"}], ids=["off", "no-compiler"])
def test_without_the_kernels_training_runs_on_mindsporeS_with_one_line(tmp_path, env):
    fields, err = finish(run_probe(env, tmp_path))
    assert "OneDnnConv2d" not in fields[0] and fields[2] == "False"
    if cpu_isa.has_avx512():
        assert fields[4] == cpu_isa.CAP  # the fallback's guard against oneDNN's reference kernels
    if "CXX" in env:
        assert sum("mindresnet CPU kernels not built: no C++ compiler" in line for line in err.splitlines()) == 1
    assert "Traceback" not in err
