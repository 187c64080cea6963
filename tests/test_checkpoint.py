"""mindresnet.checkpoint: a failed save leaves the old checkpoint whole."""
from pathlib import Path

import mindspore as ms
import pytest

from mindresnet.checkpoint import save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta


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
