"""mindresnet.training.stages: the head-only stage (linear probe, --freeze-epochs) and the full stage, through fit."""
import numpy as np
import pytest

from mindresnet.checkpoint import read_checkpoint

from conftest import fit_config, snapshots, values


def file_values(path):
    return {name: p.asnumpy().copy() for name, p in read_checkpoint(path)[0].items()}


def test_linear_probe_through_fit_writes_a_full_model_checkpoint_with_the_pretrained_backbone(
        tiny_cifar, tmp_path, pretrained_file):
    from mindresnet.training.metrics_log import read_metrics
    from mindresnet.training.run import fit
    from mindresnet.tools.eval_data import load_trained_model

    result = fit(fit_config(tiny_cifar, tmp_path / "ckpt", pretrained=str(pretrained_file), linear_probe=True,
                            epochs=3, lr=0.05))
    assert result.best_path is not None and len(result.history) == 3
    assert result.global_step == 3 * 13  # every epoch: all 100 training features in batches of 8
    net, meta = load_trained_model(result.best_path)
    assert meta.stage == "head" and meta.num_classes == 10
    pretrained = file_values(pretrained_file)
    trained = values(net)
    for name, value in pretrained.items():
        if not name.startswith("fc."):  # weights and BatchNorm statistics exactly the pretrained file's
            np.testing.assert_array_equal(trained[name], value, err_msg=name)
    assert not np.allclose(trained["fc.weight"], pretrained["fc.weight"])
    rows = read_metrics(tmp_path / "ckpt" / "metrics.csv")
    assert [row["lr"] for row in rows] == pytest.approx([0.05] * 3)
    assert all(np.isnan(row["lr_stem"]) for row in rows)  # the stem does not train
    _, last_meta = read_checkpoint(result.last_path)
    assert (last_meta.stage, last_meta.epoch) == ("head", 3)


def test_two_stage_trains_the_head_on_a_frozen_backbone_then_everything(
        tiny_cifar, tmp_path, pretrained_file, monkeypatch):
    from mindresnet.training.metrics_log import read_metrics
    from mindresnet.training.run import fit

    taken = snapshots(monkeypatch)
    result = fit(fit_config(tiny_cifar, tmp_path / "ckpt", pretrained=str(pretrained_file), freeze_epochs=1,
                            epochs=2, lr=0.01, head_lr=0.03))
    pretrained = file_values(pretrained_file)
    (head_stage, after_head), (full_stage, after_full) = taken
    assert (head_stage, full_stage) == ("head", "full")
    backbone = [name for name in pretrained if not name.startswith("fc.")]
    for name in backbone:  # the head epochs leave weights and BatchNorm statistics as the file has them
        np.testing.assert_array_equal(after_head[name], pretrained[name], err_msg=name)
    assert not np.allclose(after_head["fc.weight"], pretrained["fc.weight"])
    for name in ("conv1.weight", "layer1.0.conv1.weight", "norm.moving_mean", "layer4.1.norm2.moving_variance"):
        assert not np.allclose(after_full[name], after_head[name]), name  # then everything trains
    assert result.global_step == 2  # the full stage's updates: 1 epoch x 2 steps
    _, last_meta = read_checkpoint(result.last_path)
    assert (last_meta.stage, last_meta.epoch) == ("full", 2)
    header = (tmp_path / "ckpt" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "lr_stem" in header
    rows = read_metrics(tmp_path / "ckpt" / "metrics.csv")
    assert rows[0]["lr"] == pytest.approx(0.03) and np.isnan(rows[0]["lr_stem"])  # head stage: --head-lr
    assert rows[1]["lr"] == pytest.approx(0.01) and rows[1]["lr_stem"] == pytest.approx(0.01)  # full stage: --lr
