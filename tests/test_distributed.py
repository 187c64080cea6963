"""Data-parallel runs through msrun: rank detection, test hooks, the launcher script, real 2-worker runs."""
from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mindresnet import distributed
from mindresnet.checkpoint import read_checkpoint
from mindresnet.distributed import DistInfo, InjectedFailure, fail_if_requested, launched_by_msrun, rank_weights_path
from mindresnet.training.metrics_log import read_metrics

from conftest import REPO, write_cifar_bin

SCRIPT = REPO / "scripts" / "run_distribute_train.sh"
MSRUN_ENV = ("MS_WORKER_NUM", "MS_ROLE", distributed.FAIL_RANK_ENV, distributed.SAVE_RANK_WEIGHTS_ENV)
TINY_RUN = ["--arch", "resnet18", "--stem", "cifar", "--pretrained", "false", "--epochs", "1",
            "--batch-size", "16", "--max-steps-per-epoch", "3", "--download", "false"]


@pytest.fixture
def clean_env(monkeypatch):
    """No msrun variables or test hooks from the calling shell."""
    for name in MSRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def launcher_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in MSRUN_ENV}
    env.update(PYTHON=sys.executable, **extra)
    return env


def launch(args, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=launcher_env(**env))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- rank detection and test hooks ---------------------------------------------------------

@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"MS_WORKER_NUM": "2", "MS_ROLE": "MS_WORKER"}, True),
    ({"MS_WORKER_NUM": "1", "MS_ROLE": "MS_WORKER"}, True),
    ({"MS_WORKER_NUM": "2", "MS_ROLE": "MS_SCHED"}, True),   # the scheduler must call init() too
    ({"MS_WORKER_NUM": "2", "MS_ROLE": "MS_PSERVER"}, False),
    ({"MS_ROLE": "MS_WORKER"}, False),
])
def test_launched_by_msrun(clean_env, env, expected):
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert launched_by_msrun() is expected


def test_single_process_run_is_rank_zero_of_one(clean_env):
    info = distributed.init_distributed()
    assert info == DistInfo(rank=0, shards=1)
    assert info.is_main and info.shard_id == 0


def test_dist_info_of_a_non_main_rank():
    info = DistInfo(rank=3, shards=8)
    assert info.shard_id == 3 and not info.is_main


def test_fail_rank_hook(clean_env):
    fail_if_requested(1)  # unset: no failure
    clean_env.setenv(distributed.FAIL_RANK_ENV, "1")
    fail_if_requested(0)
    with pytest.raises(InjectedFailure, match="rank 1 fails on purpose"):
        fail_if_requested(1)


def test_rank_weights_path_hook(clean_env, tmp_path):
    last = tmp_path / "resnet18-last.ckpt"
    assert rank_weights_path(last, DistInfo(1, 2)) is None  # hook off
    clean_env.setenv(distributed.SAVE_RANK_WEIGHTS_ENV, "1")
    assert rank_weights_path(last, DistInfo(0, 2)) is None  # rank 0 writes the real checkpoint
    assert rank_weights_path(last, DistInfo(1, 2)) == tmp_path / "rank1" / "resnet18-last.rank1.ckpt"


def test_concurrent_ranks_download_cifar10_once(tmp_path, file_server, monkeypatch):
    """Ranks that all pass --download true share the archive: the hub file lock lets one fetch it."""
    from mindresnet.data import cifar10

    served, base_url, requests = file_server
    source = write_cifar_bin(tmp_path / "src" / "cifar-10-batches-bin", records_per_file=4)
    with tarfile.open(served / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-bin")
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "cache"))
    data_dir = tmp_path / "data"
    results, errors = [], []

    def rank() -> None:
        try:
            results.append(cifar10.locate_cifar10(data_dir, download=True))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=rank) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(results) == 3
    assert set(results) == {data_dir / "cifar-10-batches-bin"}
    one_download = len(requests)
    # A fresh cache and folder, fetched by one process alone, makes the same requests.
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "cache2"))
    cifar10.locate_cifar10(tmp_path / "data2", download=True)
    assert one_download > 0 and len(requests) == 2 * one_download


# --- the launcher's flags, with a stand-in for msrun ---------------------------------------

@pytest.mark.parametrize("args, message", [
    ([], "--device is required"),
    (["--device", "TPU", "--devices", "2"], "--device 'TPU' is not one of Ascend, GPU, CPU"),
    (["--device", "CPU"], "--devices is required"),
    (["--device", "CPU", "--devices", "two"], "--devices must be a positive integer, got 'two'"),
    (["--device", "CPU", "--devices", "0"], "--devices must be a positive integer"),
    (["--device", "CPU", "--devices", "1.5"], "--devices must be a positive integer"),
    (["--devices", "2", "--device"], "--device needs a value"),
    (["--device", "CPU", "--devices", "--epochs", "1"], "--devices needs a value"),
    (["--device", "CPU", "--devices", "2", "--nodes", "2", "--master-addr", "h"], "--node-rank is required"),
    (["--device", "CPU", "--devices", "2", "--nodes", "2", "--node-rank", "1"], "--master-addr is required"),
    (["--device", "CPU", "--devices", "2", "--nodes", "2", "--node-rank", "2", "--master-addr", "h"],
     "--node-rank must be an integer in 0..1"),
    (["--device", "CPU", "--devices", "2", "--master-port", "80"], "--master-port must be an integer in 1024..65535"),
])
def test_launcher_rejects_bad_flags(args, message):
    result = launch(args, MSRUN="/bin/false")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "--help" in result.stderr


def test_launcher_help():
    result = launch(["--help"])
    assert result.returncode == 0
    assert "global batch" in result.stdout and "--node-rank" in result.stdout


def fake_msrun(tmp_path: Path, body: str) -> Path:
    """An executable standing in for msrun: records its arguments, then runs ``body``."""
    path = tmp_path / "fake-msrun"
    path.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{tmp_path}/msrun-args"\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_launcher_builds_the_msrun_command_for_two_machines(tmp_path):
    msrun = fake_msrun(tmp_path, "exit 0")
    ckpt = tmp_path / "run"
    result = launch(["--device", "ascend", "--devices", "8", "--nodes", "2", "--node-rank", "1",
                     "--master-addr", "10.0.0.1", "--master-port", "9123", "--workers", "4",
                     "--batch-size", "32", "--lr", "0.4", "--ckpt-dir", str(ckpt)], MSRUN=str(msrun))
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "msrun-args").read_text().splitlines()
    assert args[:9] == ["--worker_num=16", "--local_worker_num=8", "--master_addr=10.0.0.1", "--master_port=9123",
                        f"--log_dir={ckpt}/logs", "--join=True", "--cluster_time_out=600",
                        "--tail_worker_log=8", "--node_rank=1"]
    assert args[9:] == ["python", "-m", "mindresnet.train", "--workers", "4", "--batch-size", "32", "--lr", "0.4",
                        "--ckpt-dir", str(ckpt), "--device", "Ascend"]
    assert "global batch 512" in result.stdout


def test_launcher_binds_cores_on_cpu_and_checks_train_flags(tmp_path):
    msrun = fake_msrun(tmp_path, "exit 0")
    result = launch(["--device", "CPU", "--devices", "2", "--ckpt-dir", str(tmp_path / "run")], MSRUN=str(msrun))
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "msrun-args").read_text().splitlines()
    assert "--bind_core=True" in args and "--node_rank=0" not in args and "--cluster_time_out=300" in args
    bad = launch(["--device", "CPU", "--devices", "2", "--epochs", "0"], MSRUN=str(msrun))
    assert bad.returncode == 2 and "--epochs must be >= 1" in bad.stderr
    unknown = launch(["--device", "CPU", "--devices", "2", "--no-such-flag", "1"], MSRUN=str(msrun))
    assert unknown.returncode == 2 and "unrecognized arguments: --no-such-flag" in unknown.stderr


def test_launcher_shows_the_failed_rank_log(tmp_path):
    ckpt = tmp_path / "run"
    logs = ckpt / "logs"
    logs.mkdir(parents=True)
    (logs / "worker_0.log").write_text("epoch 1/1 step 2\n[WARNING] ME(1) killed by msrun\n")
    (logs / "worker_1.log").write_text("[WARNING] DISTRIBUTED(2) noise\nTraceback (most recent call last):\n"
                                       "  File \"x.py\", line 1\nRuntimeError: disk on fire\n")
    msrun = fake_msrun(tmp_path, "echo 'RuntimeError: Distributed job exited with exception.' >&2; exit 1")
    result = launch(["--device", "CPU", "--devices", "2", "--ckpt-dir", str(ckpt)], MSRUN=str(msrun))
    assert result.returncode == 1
    assert f"last lines of {logs}/worker_1.log" in result.stderr and "RuntimeError: disk on fire" in result.stderr
    assert "worker_0.log" not in result.stderr.replace(f"all logs are in {logs}", "")
    assert "[WARNING] DISTRIBUTED" not in result.stderr


# --- real msrun runs on CPU -----------------------------------------------------------------

def load_params(path: Path) -> dict:
    import mindspore as ms

    return {name: value.asnumpy() for name, value in ms.load_checkpoint(str(path)).items()
            if hasattr(value, "asnumpy")}


@pytest.mark.slow
@pytest.mark.parametrize("stages", [[], ["--epochs", "2", "--freeze-epochs", "1"]], ids=["full", "head-then-full"])
def test_two_workers_train_in_step(real_slice, tmp_path, stages):
    ckpt = tmp_path / "run"
    result = launch(["--device", "CPU", "--devices", "2", "--master-port", str(free_port()), *TINY_RUN, *stages,
                     "--data-dir", str(real_slice), "--ckpt-dir", str(ckpt)], timeout=400,
                    MINDRESNET_SAVE_RANK_WEIGHTS="1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    backup = ["resnet18-last.bak.ckpt"] if stages else []  # the first epoch's, kept when the second saved
    assert sorted(p.name for p in ckpt.glob("*.ckpt")) == ["resnet18-best.ckpt", *backup, "resnet18-last.ckpt"]
    assert len(list(ckpt.rglob("metrics*.csv"))) == 1 and len(list(ckpt.rglob("*best*.ckpt"))) == 1
    rank0_log = (ckpt / "logs" / "worker_0.log").read_text()
    rank1_log = (ckpt / "logs" / "worker_1.log").read_text()
    assert re.search(r"global batch (\d+), rank 0 of 2", rank0_log).group(1) == str(2 * 16)
    assert "global batch 32, rank 1 of 2" in rank1_log
    assert "best test accuracy" in rank0_log and "best test accuracy" in rank1_log  # both ranks finished
    stems = [np.isnan(row["lr_stem"]) for row in read_metrics(ckpt / "metrics.csv")]
    assert stems == ([True, False] if stages else [False])  # a head-only epoch (the stem rests), then every layer
    rank0 = load_params(ckpt / "resnet18-last.ckpt")
    rank1 = load_params(ckpt / "rank1" / "resnet18-last.rank1.ckpt")
    assert rank0.keys() == rank1.keys()
    # Gradients are averaged, so weights and optimizer state agree exactly; BatchNorm running
    # statistics are each rank's own (computed on its shard), as in any data-parallel run.
    local = {name for name in rank0 if name.endswith(("moving_mean", "moving_variance"))}
    assert local
    differing = [name for name in rank0.keys() - local if not np.array_equal(rank0[name], rank1[name])]
    assert differing == []


@pytest.mark.slow
def test_a_dead_worker_stops_the_launcher(real_slice, tmp_path):
    ckpt = tmp_path / "run"
    result = launch(["--device", "CPU", "--devices", "2", "--master-port", str(free_port()), *TINY_RUN,
                     "--data-dir", str(real_slice), "--ckpt-dir", str(ckpt)], timeout=300,
                    MINDRESNET_FAIL_RANK="1")
    assert result.returncode != 0
    assert f"last lines of {ckpt}/logs/worker_1.log" in result.stderr
    assert "InjectedFailure: MINDRESNET_FAIL_RANK=1" in result.stderr
    assert not (ckpt / "resnet18-best.ckpt").exists()


@pytest.mark.slow
def test_sigterm_to_the_launcher_saves_the_step_and_resume_finishes(real_slice, tmp_path):
    ckpt = tmp_path / "run"
    run = ["--device", "CPU", "--devices", "2", "--master-port", str(free_port()), *TINY_RUN,
           "--max-steps-per-epoch", "24", "--data-dir", str(real_slice), "--ckpt-dir", str(ckpt)]
    launcher = subprocess.Popen(["bash", str(SCRIPT), *run, "--save-every-steps", "1"], env=launcher_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = ckpt / "resnet18-last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and launcher.poll() is None and time.time() < deadline:
        time.sleep(0.2)  # the first step's save: both ranks are stepping
    launcher.send_signal(signal.SIGTERM)
    signalled = time.time()
    stdout, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 143, stdout[-2000:] + stderr[-3000:]
    assert time.time() - signalled < 25  # not held by msrun's scheduler timing out the stopped ranks (30 s)
    assert "continue the run with the same command and --resume" in stderr
    stopped = read_checkpoint(last)[1]
    assert (stopped.epoch, stopped.stage) == (0, "full") and 1 <= stopped.step < 24  # mid-epoch, at a step
    assert f"interrupted at epoch 1, step {stopped.step}: saved" in (ckpt / "logs" / "worker_0.log").read_text()
    resumed = launch([*run, "--resume"], timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    finished = read_checkpoint(last)[1]
    assert (finished.epoch, finished.step) == (1, 0)
    assert f"at epoch 1, step {stopped.step} (full stage)" in (ckpt / "logs" / "worker_0.log").read_text()


FAKE_WORKER = """
import os, signal, sys, time
rank, folder = os.environ["FAKE_RANK"], os.environ["FAKE_DIR"]
def on_signal(signum, frame):
    open(os.path.join(folder, f"rank{rank}.signal"), "w").write(str(signum))
    if rank == "0":
        sys.exit(128 + signum)  # rank 0 saves and exits; the others keep stepping
signal.signal(signal.SIGTERM, on_signal)
open(os.path.join(folder, f"rank{rank}.ready"), "w").close()
for _ in range(600):
    time.sleep(0.1)
"""

FAKE_MSRUN = """#!/usr/bin/env bash
# Like msrun: workers in sessions of their own; when one fails, SIGKILL the others and fail.
pids=()
for rank in 0 1; do
  MS_ROLE=MS_WORKER FAKE_RANK=$rank FAKE_DIR="{folder}" setsid "{python}" "{folder}/worker.py" &
  pids+=($!)
done
while kill -0 "${{pids[0]}}" 2>/dev/null; do sleep 0.1; done
kill -KILL "${{pids[1]}}"
exit 1
"""


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_launcher_stops_the_workers_and_rank0_saves(tmp_path, signum, code):
    (tmp_path / "worker.py").write_text(FAKE_WORKER)
    msrun = tmp_path / "fake-msrun"
    msrun.write_text(FAKE_MSRUN.format(folder=tmp_path, python=sys.executable))
    msrun.chmod(msrun.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PYTHON": sys.executable, "MSRUN": str(msrun)}
    launcher = subprocess.Popen(["bash", str(REPO / "scripts" / "run_distribute_train.sh"), "--device", "CPU",
                                 "--devices", "2", "--ckpt-dir", str(tmp_path / "run")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not all((tmp_path / f"rank{r}.ready").exists() for r in (0, 1)) and time.time() < deadline:
        time.sleep(0.1)
    launcher.send_signal(signum)
    stdout, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == code, stdout + stderr
    assert (tmp_path / "rank0.signal").read_text() == str(int(signal.SIGTERM))
    assert "continue the run with the same command and --resume" in stderr
    assert "last lines of" not in stderr  # a requested stop is not reported as a failure
