"""mindresnet.lr_find: the LR range test, its suggestions, files and CLI."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from mindresnet.tools import lr_find
from mindresnet.training.config import TrainConfig


def test_exponential_rates_and_smoothing():
    rates = lr_find.exponential_rates(1e-7, 10.0, 9)
    np.testing.assert_allclose(rates[[0, 4, 8]], [1e-7, 10 ** -3, 10.0])
    np.testing.assert_allclose(lr_find.smooth([2.0, 2.0, 2.0]), [2.0, 2.0, 2.0])  # bias-corrected


def test_suggestions_on_a_known_curve():
    lrs = lr_find.exponential_rates(1e-6, 1.0, 61)
    # Flat, then falling fastest near 1e-3, then rising: a valley-shaped loss.
    x = np.log10(lrs)
    losses = 2.0 - np.tanh((x + 3.0) * 2) + np.where(x > -1, (x + 1) * 4, 0)
    steep = lr_find.suggest_steep(lrs, losses)
    valley = lr_find.suggest_valley(lrs, losses)
    assert 10 ** -3.3 < steep < 10 ** -2.7
    assert 1e-4 < valley < 1e-1


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def source_weights(tmp_path):
    """A resnet18 (cifar stem) checkpoint with metadata, as --pretrained."""
    from mindresnet.checkpoint import save_checkpoint
    from mindresnet.models import create_model

    path = tmp_path / "source" / "resnet18.ckpt"
    save_checkpoint(create_model("resnet18", num_classes=10, stem="cifar"), path)
    return path


def test_lr_find_sweeps_a_copy_and_writes_its_files(tiny_cifar, source_weights, tmp_path, capsys):
    before = _sha(source_weights)
    code = lr_find.main(["--arch", "resnet18", "--stem", "cifar", "--pretrained", str(source_weights),
                         "--data-dir", str(tiny_cifar), "--no-download", "--batch-size", "16", "--steps", "12",
                         "--start-lr", "1e-5", "--end-lr", "100", "--optimizer", "sgd", "--freeze-epochs", "0",
                         "--workers", "1", "--out-dir", str(tmp_path / "sweep")])
    assert code == 0
    assert "suggested --lr" in capsys.readouterr().out
    assert _sha(source_weights) == before  # the weights file is untouched
    assert [path.name for path in tmp_path.rglob("*.ckpt")] == [source_weights.name]
    rows = (tmp_path / "sweep" / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss,smoothed_loss" and 2 <= len(rows) - 1 <= 12
    assert (tmp_path / "sweep" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"


def test_lr_find_library_suggests_within_the_sweep(tiny_cifar, tmp_path):
    # 6 steps per epoch: the sweep runs on across epochs, with the run's regularisers on.
    config = TrainConfig(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(tiny_cifar), download=False,
                         batch_size=16, optimizer="sgd", drop_path=0.1, reprob=0.25, workers=1)
    result = lr_find.lr_find(config, steps=14, start_lr=1e-4, end_lr=50.0, out_dir=str(tmp_path))
    assert result.lrs[0] == pytest.approx(1e-4) and np.all(np.diff(result.lrs) > 0)
    assert result.diverged or len(result.lrs) == 14
    for suggestion in (result.valley, result.steep):
        assert result.lrs[0] <= suggestion <= result.lrs[-1]
    assert math.isfinite(result.smoothed.min())
