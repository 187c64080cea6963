"""mindresnet.checkpoint: a failed save leaves the old checkpoint whole."""
from pathlib import Path

import mindspore as ms
import pytest

from mindresnet.checkpoint import META_KEY, check_readable, save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.errors import CheckpointError


def test_failed_write_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    net = ms.nn.Dense(3, 2)
    path = save_checkpoint(net, tmp_path / "model.ckpt", CheckpointMeta(arch="resnet18", num_classes=2, epoch=1))
    before = path.read_bytes()

    def crash(save_obj, ckpt_file_name, **kwargs):
        Path(ckpt_file_name).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(net, path, CheckpointMeta(arch="resnet18", num_classes=2, epoch=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_a_checkpoint_written_short_is_refused_and_the_last_one_kept(tmp_path, monkeypatch):
    net = ms.nn.Dense(64, 64)
    meta = CheckpointMeta(arch="resnet18", num_classes=64, epoch=1)
    path = save_checkpoint(net, tmp_path / "last.ckpt", meta, keep_backup=True)
    check_readable(path)
    whole = path.read_bytes()
    save_whole = ms.save_checkpoint

    def save_short(save_obj, ckpt_file_name, **kwargs):  # a write that loses its tail without an OSError
        save_whole(save_obj, ckpt_file_name, **kwargs)
        Path(ckpt_file_name).write_bytes(Path(ckpt_file_name).read_bytes()[: len(whole) // 2])

    monkeypatch.setattr(ms, "save_checkpoint", save_short)
    with pytest.raises(CheckpointError, match="cannot be read back"):
        save_checkpoint(net, path, meta, keep_backup=True)
    assert path.read_bytes() == whole


def test_the_readback_refuses_a_checkpoint_cut_anywhere_or_garbled(tmp_path):
    net = ms.nn.Dense(512, 600)
    path = save_checkpoint(net, tmp_path / "big.ckpt", CheckpointMeta(arch="resnet18", num_classes=600, epoch=1))
    check_readable(path, last_name=META_KEY)
    data = path.read_bytes()
    for cut in (0, 1, 2, 100, len(data) // 3, len(data) // 2, len(data) - 1):
        short = tmp_path / "short.ckpt"
        short.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not written whole"):
            check_readable(short)
    garbled = bytearray(data)
    garbled[0] = 0x12
    (tmp_path / "garbled.ckpt").write_bytes(bytes(garbled))
    with pytest.raises(CheckpointError, match="no record at byte 0"):
        check_readable(tmp_path / "garbled.ckpt")


def test_a_checkpoint_cut_between_two_records_is_refused_by_its_last_name(tmp_path, monkeypatch):
    net = ms.nn.Dense(64, 64)
    meta = CheckpointMeta(arch="resnet18", num_classes=64, epoch=1)
    path = save_checkpoint(net, tmp_path / "last.ckpt", meta, keep_backup=True)
    whole = path.read_bytes()
    ms.save_checkpoint(net, str(tmp_path / "plain.ckpt"))  # the same records, without the metadata written last
    without_meta = (tmp_path / "plain.ckpt").read_bytes()
    assert whole.startswith(without_meta) and len(whole) > len(without_meta)
    (tmp_path / "cut.ckpt").write_bytes(without_meta)
    check_readable(tmp_path / "cut.ckpt")  # every record it holds is whole
    with pytest.raises(CheckpointError, match="last record is 'bias'"):
        check_readable(tmp_path / "cut.ckpt", last_name=META_KEY)
    save_whole = ms.save_checkpoint

    def save_without_meta(save_obj, ckpt_file_name, **kwargs):
        save_whole(save_obj, ckpt_file_name, **kwargs)
        Path(ckpt_file_name).write_bytes(without_meta)

    monkeypatch.setattr(ms, "save_checkpoint", save_without_meta)
    with pytest.raises(CheckpointError, match="not written whole"):
        save_checkpoint(net, path, meta, keep_backup=True)
    assert path.read_bytes() == whole
