"""Faults: full disks and bad files, offline downloads, signals, the launcher's stop, console commands."""
from __future__ import annotations

import errno
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mindresnet import hub
from mindresnet.errors import DownloadError, WriteError
from mindresnet.fileio import atomic_path, backup_path, save_figure, write_text
from mindresnet.interrupts import Preempted
from mindresnet.training.signals import StopSignals
from mindresnet.training.progress import epoch_batches, epoch_seed

from conftest import REPO

BIN = Path(sys.executable).parent
CONSOLE_COMMANDS = {"mindresnet-train": "train", "mindresnet-evaluate": "tools.evaluate",
                    "mindresnet-predict": "tools.predict", "mindresnet-visualize": "tools.visualize",
                    "mindresnet-export": "tools.export", "mindresnet-convert": "tools.convert",
                    "mindresnet-lr-find": "tools.lr_find"}


# --- writes: backups and full disks ----------------------------------------------------------

def test_keep_backup_holds_the_previous_version(tmp_path):
    target = tmp_path / "resnet18-last.ckpt"
    for version in ("one", "two", "three"):
        with atomic_path(target, keep_backup=True) as tmp:
            tmp.write_text(version)
    assert target.read_text() == "three"
    assert backup_path(target).read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet18-last.bak.ckpt", "resnet18-last.ckpt"]


def test_a_new_file_that_fails_its_check_replaces_nothing(tmp_path):
    target = tmp_path / "resnet18-last.ckpt"
    for version in ("one", "two"):
        with atomic_path(target, keep_backup=True) as tmp:
            tmp.write_text(version)

    def unreadable(path):
        raise ValueError(f"{path} is truncated")

    with pytest.raises(ValueError, match="truncated"):
        with atomic_path(target, keep_backup=True, verify=unreadable) as tmp:
            tmp.write_text("three, cut sh")
    assert target.read_text() == "two" and backup_path(target).read_text() == "one"
    assert len(list(tmp_path.iterdir())) == 2


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def half_then_no_space(path):
    Path(path).write_bytes(b"half a file")
    no_space()


def write_config(path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: half_then_no_space(self))
    write_text(path, "arch: resnet18\n")


def write_metrics_file(path, monkeypatch):
    from mindresnet.training import metrics_log

    class FullDiskWriter:
        def __init__(self, handle, **kwargs):
            self.handle = handle

        def writeheader(self):
            self.handle.write("epoch,loss\n")
            no_space()

    monkeypatch.setattr(metrics_log.csv, "DictWriter", FullDiskWriter)
    metrics_log.write_metrics([{"epoch": 1, "loss": 0.5}], path)


def write_figure(path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    monkeypatch.setattr(fig, "savefig", lambda target, **kwargs: half_then_no_space(target))
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)


def write_ckpt(path, monkeypatch):
    import mindspore as ms

    from mindresnet.checkpoint import save_checkpoint

    monkeypatch.setattr(ms, "save_checkpoint", lambda obj, target, **kwargs: half_then_no_space(target))
    save_checkpoint([ms.Parameter(ms.Tensor(np.ones(2, np.float32)), name="w")], path)


@pytest.mark.parametrize("name, writer", [("config.yaml", write_config), ("metrics.csv", write_metrics_file),
                                          ("training_curves.png", write_figure), ("resnet18-last.ckpt", write_ckpt)])
def test_a_full_disk_keeps_the_old_file_and_says_what_to_do(tmp_path, monkeypatch, name, writer):
    target = tmp_path / name
    target.write_bytes(b"the old, complete file")
    with pytest.raises(WriteError) as caught:
        writer(target, monkeypatch)
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC
    assert f"Could not write {target}: No space left on device" in message
    assert "previous file is unchanged" in message and "Free space on the disk" in message
    assert target.read_bytes() == b"the old, complete file"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_a_write_error_names_a_file_that_did_not_exist(tmp_path, monkeypatch):
    with pytest.raises(WriteError, match="nothing was written"):
        write_config(tmp_path / "config.yaml", monkeypatch)


# --- offline downloads --------------------------------------------------------------------------

def test_offline_download_names_url_cache_path_and_both_fixes(tmp_path, closed_port_url, monkeypatch):
    monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
    dest = tmp_path / "cache" / "checkpoints" / "resnet18-1e65cd21.ckpt"
    url = closed_port_url + "toolkits/resnet18-1e65cd21.ckpt"
    with pytest.raises(DownloadError) as caught:
        hub.fetch(url, dest, progressbar=False)
    message = str(caught.value)
    assert message.startswith(f"Could not download {url}: ") and "Connection refused" in message
    assert f"copy the file resnet18-1e65cd21.ckpt (from {url}, fetched on another machine) to {dest}" in message
    assert "set MINDRESNET_MIRROR=<base url> to a server that serves resnet18-1e65cd21.ckpt" in message
    assert "Traceback" not in message and not dest.exists()


def test_a_dead_mirror_is_named_next_to_the_original_url(tmp_path, closed_port_url, monkeypatch):
    from mindresnet.models import pretrained

    monkeypatch.setenv(hub.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(hub.MIRROR_ENV, closed_port_url + "mirror")
    with pytest.raises(DownloadError) as caught:
        pretrained.download_pretrained("resnet18")
    message = str(caught.value)
    official = re.match(r"Could not download (https://\S+/(\S+\.ckpt)) \(from the mirror: (\S+)\)", message)
    assert official, message
    assert official.group(3) == f"{closed_port_url}mirror/{official.group(2)}"
    assert str(tmp_path / "home" / "checkpoints" / official.group(2)) in message
    assert f"(now MINDRESNET_MIRROR={closed_port_url}mirror)" in message


def test_offline_cifar10_download_says_where_the_files_go(tmp_path, closed_port_url, monkeypatch):
    from mindresnet.data.cifar10 import download_cifar10

    monkeypatch.setenv(hub.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(hub.MIRROR_ENV, closed_port_url)
    with pytest.raises(DownloadError) as caught:
        download_cifar10(tmp_path / "data")
    message = str(caught.value)
    assert str(tmp_path / "home" / "datasets" / "cifar-10-binary.tar.gz") in message
    assert str(tmp_path / "data" / "cifar-10-batches-bin") in message and "MINDRESNET_MIRROR" in message


# --- signals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_at_the_next_check(signum, code):
    before = signal.getsignal(signum)
    with StopSignals() as stop:
        os.kill(os.getpid(), signum)
        time.sleep(0.01)  # the handler has run: the work in progress went on
        assert stop.requested
        with pytest.raises(Preempted) as caught:
            stop.check()
    assert caught.value.exit_code == code and isinstance(caught.value, KeyboardInterrupt)
    assert signal.getsignal(signum) is before


def test_a_signal_during_abortable_work_stops_it_at_once():
    with StopSignals() as stop:
        started = time.perf_counter()
        with pytest.raises(Preempted):
            with stop.abortable():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(500):
                    time.sleep(0.01)
        assert time.perf_counter() - started < 1.0
        with pytest.raises(Preempted):  # a pending stop also refuses to start abortable work
            with stop.abortable():
                pass


def test_a_non_leader_rank_keeps_stepping_then_exits_after_its_grace():
    code = ("import os, signal, time\n"
            "from mindresnet.preemption import StopSignals\n"
            "with StopSignals(leader=False, peer_grace_s=0.5) as stop:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    for step in range(300):\n"
            "        stop.check()\n"
            "        print(step, flush=True)\n"
            "        time.sleep(0.01)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 143, result.stderr
    steps = result.stdout.split()
    assert 5 < len(steps) < 300  # stepped on after the signal, ended by the grace timer


# --- data order --------------------------------------------------------------------------------

def batches_of(dataset, seed, epoch, skip=0, count=4):
    out = []
    for images, labels in epoch_batches(dataset, seed, epoch, skip):
        out.append((images.asnumpy(), labels.asnumpy()))
        if len(out) == count:
            break
    return out


def test_each_epoch_has_its_own_order_reproducible_from_seed_and_epoch(tiny_cifar):
    from mindresnet.data import create_dataset_cifar10

    assert len({epoch_seed(1, 0), epoch_seed(1, 1), epoch_seed(2, 0)}) == 3
    dataset, _ = create_dataset_cifar10(tiny_cifar, "train", batch_size=8, workers=2)
    epoch0, epoch1 = batches_of(dataset, 1, 0), batches_of(dataset, 1, 1)
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])  # reshuffled and re-augmented
    fresh, _ = create_dataset_cifar10(tiny_cifar, "train", batch_size=8, workers=2)
    again = batches_of(fresh, 1, 1)  # a new pipeline (as in a resumed process), epoch 1 first
    resumed = batches_of(dataset, 1, 1, skip=2, count=2)
    for (images, labels), (images2, labels2) in zip(epoch1, again):
        np.testing.assert_array_equal(images, images2)
        np.testing.assert_array_equal(labels, labels2)
    for (images, labels), (images2, labels2) in zip(epoch1[2:], resumed):
        np.testing.assert_array_equal(images, images2)
        np.testing.assert_array_equal(labels, labels2)


# --- the launcher ------------------------------------------------------------------------------

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
                                 "--workers", "2", "--ckpt-dir", str(tmp_path / "run")],
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


# --- console commands --------------------------------------------------------------------------

def test_console_commands_are_installed_and_match_python_m():
    for command, module in CONSOLE_COMMANDS.items():
        script = BIN / command
        assert script.is_file(), f"{script} missing: run pip install -e ."
        assert f"from mindresnet.{module} import main" in script.read_text()
    by_command = subprocess.run([str(BIN / "mindresnet-train"), "--help"], capture_output=True, text=True,
                                timeout=120)
    by_module = subprocess.run([sys.executable, "-m", "mindresnet.train", "--help"], capture_output=True,
                               text=True, timeout=120)
    assert by_command.returncode == by_module.returncode == 0
    assert by_command.stdout == by_module.stdout and "--resume" in by_command.stdout


# --- resuming from a bad -last.ckpt ------------------------------------------------------------

def write_small_ckpt(path):
    import mindspore as ms

    staging = path.with_name("staging.ckpt")  # ms.save_checkpoint appends .ckpt to other names
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.arange(3, dtype=np.float32))}], str(staging))
    staging.rename(path)


def test_resume_falls_back_to_the_backup_of_an_unreadable_last_ckpt(tmp_path):
    from mindresnet.training.resume import read_resume_checkpoint

    last = tmp_path / "resnet18-last.ckpt"
    write_small_ckpt(backup_path(last))
    last.write_bytes(b"cut short by a full disk")
    params, _, used = read_resume_checkpoint(last)
    assert used == backup_path(last) and params["w"].asnumpy().tolist() == [0.0, 1.0, 2.0]
    assert not last.exists() and (tmp_path / "resnet18-last.ckpt.unreadable").read_bytes().startswith(b"cut")


@pytest.mark.parametrize("backup_state, expected", [
    (None, "There is no backup (resnet18-last.bak.ckpt) to fall back on: restore"),
    (b"also bad", "Its backup is unreadable too"),
])
def test_resume_says_what_to_do_when_no_valid_file_is_left(tmp_path, backup_state, expected):
    from mindresnet.errors import CheckpointError
    from mindresnet.training.resume import read_resume_checkpoint

    last = tmp_path / "resnet18-last.ckpt"
    last.write_bytes(b"cut short")
    if backup_state is not None:
        backup_path(last).write_bytes(backup_state)
    with pytest.raises(CheckpointError) as caught:
        read_resume_checkpoint(last)
    assert str(last) in str(caught.value) and expected in str(caught.value)
    assert "--ckpt-dir" in str(caught.value) and last.exists()


@pytest.mark.parametrize("download_flags", [["--pretrained", "true"], ["--pretrained", "false", "--download", "true"]])
def test_offline_train_ends_with_the_message_and_exit_code_1(tmp_path, tiny_cifar, closed_port_url, monkeypatch,
                                                             capsys, download_flags):
    from mindresnet.train import main

    monkeypatch.setenv(hub.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(hub.MIRROR_ENV, closed_port_url)
    data_dir = tiny_cifar if download_flags[1] == "true" else tmp_path / "no-cifar-here"
    code = main(["--arch", "resnet18", "--stem", "cifar", "--data-dir", str(data_dir), "--epochs", "1",
                 "--batch-size", "8", "--ckpt-dir", str(tmp_path / "run"), *download_flags])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: Could not download https://" in err and f"(from the mirror: {closed_port_url}" in err
    assert str(tmp_path / "home") in err and "MINDRESNET_MIRROR=<base url>" in err
    assert "Traceback" not in err
RUN_FLAGS = ["--arch", "resnet18", "--stem", "cifar", "--pretrained", "false", "--download", "false",
             "--epochs", "2", "--batch-size", "16", "--max-steps-per-epoch", "30", "--eval-every", "2",
             "--optimizer", "sgd", "--lr", "0.05", "--seed", "3"]


def train_process(real_subset, ckpt_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "mindresnet.train", *RUN_FLAGS, "--data-dir", str(real_subset),
                             "--ckpt-dir", str(ckpt_dir), *extra], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run(real_subset, tmp_path):
    import mindspore as ms

    from mindresnet.checkpoint import read_checkpoint

    whole = train_process(real_subset, tmp_path / "whole")
    cut = train_process(real_subset, tmp_path / "cut", "--save-every-steps", "4")
    last = tmp_path / "cut" / "resnet18-last.ckpt"
    deadline = time.time() + 600
    while not last.exists() and time.time() < deadline and cut.poll() is None:
        time.sleep(0.2)
    cut.send_signal(signal.SIGTERM)
    started = time.time()
    _, err = cut.communicate(timeout=300)
    assert cut.returncode == 143, err[-2000:]
    assert time.time() - started < 30
    _, meta = read_checkpoint(last)
    assert 0 < meta.epoch * 30 + meta.step < 60, "the signal did not land mid-run"
    resumed = train_process(real_subset, tmp_path / "cut", "--resume", "true")
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-2000:]
    _, err = whole.communicate(timeout=900)
    assert whole.returncode == 0, err[-2000:]
    a = ms.load_checkpoint(str(tmp_path / "whole" / "resnet18-last.ckpt"))
    b = ms.load_checkpoint(str(last))
    names = [n for n in a if hasattr(a[n], "asnumpy")]
    assert names and set(names) <= set(b)
    for name in names:  # bit-identical on CPU in our runs; a small tolerance for other thread counts
        np.testing.assert_allclose(a[name].asnumpy(), b[name].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    whole_rows = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    cut_rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:5] for r in whole_rows] == [r.split(",")[:5] for r in cut_rows]  # loss, acc, top5, lr
