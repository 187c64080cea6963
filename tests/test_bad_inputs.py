"""Bad inputs through the real command line: a clear one-line error, the right exit code, no
traceback, and every file that was there before left byte for byte as it was."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, write_cifar_bin
from mindresnet.checkpoint import save_checkpoint
from mindresnet.models import create_model

TRAIN = ["--arch", "resnet18", "--pretrained", "false", "--batch-size", "16", "--epochs", "1",
         "--max-steps-per-epoch", "1", "--workers", "1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A tiny CIFAR-10 folder, a mindresnet resnet18 checkpoint, a resnet34 file without metadata,
    an earlier run's folder, a file, a binary file, a folder holding a symlink loop and an image
    folder of one class."""
    root = tmp_path_factory.mktemp("world")
    write_cifar_bin(root / "cifar", records_per_file=8, test_records=16)
    save_checkpoint(create_model("resnet18", num_classes=10, stem="cifar"), root / "r18.ckpt")
    deeper = create_model("resnet34", num_classes=10, stem="cifar")
    ms.save_checkpoint([{"name": p.name, "data": p} for p in deeper.get_parameters()], str(root / "r34.ckpt"))
    (root / "earlier").mkdir()
    (root / "earlier" / "resnet18-best.ckpt").write_bytes(b"earlier best")
    (root / "earlier" / "metrics.csv").write_text("epoch,loss\n1,2.3\n")
    (root / "a_file").write_text("not a folder\n")
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "images").mkdir()
    os.symlink("loop_b.png", root / "images" / "loop_a.png")
    os.symlink("loop_a.png", root / "images" / "loop_b.png")
    (root / "readonly").mkdir()
    (root / "readonly" / "kept.txt").write_text("kept\n")
    cats = root / "oneclass" / "train" / "cat"
    cats.mkdir(parents=True)
    for index in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * index, np.uint8)).save(cats / f"{index}.png")
    return root


def snapshot(folder: Path) -> dict:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink()}


def run_tool(tool: str, args, cwd: Path, readonly: Path = None, timeout: float = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"mindresnet.{tool}", *map(str, args)]
    if readonly is not None:  # root ignores permissions: a read-only bind mount in a private mount namespace
        mount = f"mount --bind -o ro {readonly} {readonly} && exec \"$@\""
        command = ["unshare", "-m", "sh", "-c", mount, "sh", *command]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def can_mount_readonly(folder: Path) -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {folder} {folder} && "
                            f"! touch {folder}/.probe"], capture_output=True)
    return probe.returncode == 0


CASES = [  # (id, tool, args with {w} for the world folder, read-only folder or None, code, words in the output)
    ("lr-inf", "train", ["--lr", "inf"], None, 1, ["--lr", "finite"]),
    ("workers-0", "train", ["--workers", "0"], None, 1, ["--workers"]),
    ("image-size-huge", "train", ["--image-size", "100000"], None, 1, ["--image-size", "2048"]),
    ("config-binary", "train", ["--config", "{w}/binary.yaml"], None, 1, ["--config", "binary.yaml", "UTF-8"]),
    ("config-folder", "train", ["--config", "{w}/earlier"], None, 1, ["--config", "is a folder"]),
    ("data-dir-file", "train", ["--data-dir", "{w}/a_file", "--ckpt-dir", "{w}/new1"], None, 1, ["a_file"]),
    ("ckpt-dir-file", "train", ["--ckpt-dir", "{w}/a_file"], None, 1, ["--ckpt-dir", "a_file", "is a file"]),
    ("earlier-results", "train", ["--ckpt-dir", "{w}/earlier"], None, 1,
     ["earlier", "--resume", "--overwrite", "resnet18-best.ckpt"]),
    ("resume-and-overwrite", "train", ["--ckpt-dir", "{w}/earlier", "--resume", "--overwrite"], None, 1,
     ["--resume", "--overwrite"]),
    ("readonly-ckpt-dir", "train", ["--ckpt-dir", "{w}/readonly"], "readonly", 1,
     ["Could not write", "readonly", "writable"]),
    ("evaluate-other-depth", "evaluate", ["--ckpt", "{w}/r34.ckpt", "--arch", "resnet18", "--num-classes", "10",
                                          "--stem", "cifar", "--data-dir", "{w}/cifar"], None, 1,
     ["r34.ckpt", "resnet34", "--arch resnet34"]),
    ("evaluate-ckpt-folder", "evaluate", ["--ckpt", "{w}/earlier", "--data-dir", "{w}/cifar"], None, 1,
     ["earlier", "is a folder"]),
    ("evaluate-confusion-readonly", "evaluate", ["--ckpt", "{w}/r18.ckpt", "--data-dir", "{w}/cifar",
                                                 "--confusion", "{w}/readonly/cm.png"], "readonly", 1,
     ["top-1", "Could not write", "cm.png"]),
    ("convert-other-depth", "convert", ["{w}/r34.ckpt", "{w}/out18.ckpt", "--arch", "resnet18"], None, 1,
     ["r34.ckpt", "--arch resnet34"]),
    ("convert-missing", "convert", ["{w}/missing.pth", "{w}/out.ckpt"], None, 1, ["missing.pth", "does not exist"]),
    ("predict-symlink-loop", "predict", ["{w}/images", "--ckpt", "{w}/r18.ckpt"], None, 1, ["images"]),
    ("predict-csv-under-file", "predict", ["{w}/images", "--ckpt", "{w}/r18.ckpt", "--csv", "{w}/a_file/p.csv"],
     None, 1, ["images"]),
    ("visualize-num-huge", "visualize", ["--ckpt", "{w}/r18.ckpt", "--data-dir", "{w}/cifar", "--num", "100000",
                                         "--out", "{w}/grid.png"], None, 1, ["--num 100000", "16"]),
    ("folder-one-class", "train", ["--dataset", "folder", "--data-dir", "{w}/oneclass"], None, 1,
     ["oneclass/train", "one class folder (cat)"]),
    ("export-under-file", "export", ["--ckpt", "{w}/r18.ckpt", "--out", "{w}/a_file/model.mindir"], None, 1,
     ["a_file", "is a file"]),
]


@pytest.mark.parametrize("tool, args, readonly, code, words", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_fails_cleanly(world, tmp_path, tool, args, readonly, code, words):
    args = [arg.replace("{w}", str(world)) for arg in args]
    if tool == "train" and "--data-dir" not in args:
        args += ["--data-dir", str(world / "cifar")]
    if tool == "train" and "--ckpt-dir" not in args:
        args += ["--ckpt-dir", str(tmp_path / "run")]
    if tool == "train":
        args = TRAIN + args
    if readonly and not can_mount_readonly(world / readonly):
        pytest.skip("this kernel refuses a read-only bind mount in a private mount namespace (unshare -m)")
    before = snapshot(world)
    result = run_tool(tool, args, cwd=tmp_path, readonly=world / readonly if readonly else None)
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output
    assert "error: " in result.stderr
    for word in words:
        assert word in output, f"{word!r} not in:\n{output}"
    assert snapshot(world) == before
    assert not (tmp_path / "rank_0").exists()


def test_a_held_folder_is_refused_naming_the_holder(world, tmp_path):
    folder = tmp_path / "held"
    folder.mkdir()
    with open(folder / ".mindresnet.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(json.dumps({"pid": 4242, "host": "elsewhere", "started": "2026-01-01 00:00:00"}))
        lock.flush()
        result = run_tool("train", TRAIN + ["--data-dir", world / "cifar", "--ckpt-dir", folder], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "in use by another training run (PID 4242 on host elsewhere since 2026-01-01" in result.stderr
    assert "Traceback" not in result.stderr


def test_overwrite_moves_the_earlier_run_aside_and_a_stale_lock_is_taken_over(world, tmp_path):
    folder = tmp_path / "again"
    shutil.copytree(world / "earlier", folder)
    (folder / ".mindresnet.lock").write_text(json.dumps({"pid": 1, "host": "gone", "started": "then"}))
    result = run_tool("train", TRAIN + ["--data-dir", world / "cifar", "--ckpt-dir", folder, "--overwrite"],
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "taking it over" in result.stderr
    kept = [path for path in folder.glob("previous-*/resnet18-best.ckpt")]
    assert len(kept) == 1 and kept[0].read_bytes() == b"earlier best"
    assert (folder / "resnet18-best.ckpt").read_bytes() != b"earlier best"
    assert not (folder / ".mindresnet.lock").exists()


def test_a_failed_offline_download_leaves_no_data_folder(world, tmp_path, monkeypatch, closed_port_url):
    monkeypatch.setenv("MINDRESNET_MIRROR", closed_port_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    fresh = tmp_path / "fresh" / "cifar"
    result = run_tool("train", TRAIN + ["--data-dir", fresh, "--ckpt-dir", tmp_path / "run"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "error: Could not download" in result.stderr and str(fresh) in result.stderr
    assert not (tmp_path / "fresh").exists()
    assert not list((tmp_path / "home").rglob("*.lock"))


def test_ctrl_c_saves_the_step_and_exits_130(world, tmp_path):
    command = [sys.executable, "-m", "mindresnet.train", *TRAIN, "--epochs", "50", "--max-steps-per-epoch", "2",
               "--data-dir", str(world / "cifar"), "--ckpt-dir", str(tmp_path / "run")]
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    while not (tmp_path / "run" / "metrics.csv").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "SIGINT received" in stderr and "stopped by SIGINT (Ctrl-C)" in stderr
    assert "Traceback" not in stderr and "SIGTERM" not in stderr
    assert (tmp_path / "run" / "resnet18-last.ckpt").is_file()
    assert not (tmp_path / "rank_0").exists()
