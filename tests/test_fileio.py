"""mindresnet.fileio: atomic writes (the old file or the complete new one, never a part), backups, full disks."""
import errno
import os
from pathlib import Path

import numpy as np
import pytest

from mindresnet.errors import WriteError
from mindresnet.fileio import atomic_path, backup_path, save_figure, write_text


def test_write_text_creates_folder_and_file(tmp_path):
    target = tmp_path / "new" / "config.yaml"
    assert write_text(target, "a: 1\n") == target
    assert target.read_text() == "a: 1\n"
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_suffix_is_kept_on_the_temporary_name(tmp_path):
    with atomic_path(tmp_path / "best.ckpt", ".ckpt") as tmp:
        assert tmp.name.endswith(".ckpt") and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"x")
    assert (tmp_path / "best.ckpt").read_bytes() == b"x"


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
