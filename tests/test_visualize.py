"""mindresnet.visualize: the tutorial's prediction grid, blue when right, red when wrong."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import CLASS_NAMES
from mindresnet.tools import visualize
from mindresnet.data import CIFAR10_MEAN, CIFAR10_STD
from mindresnet.tools.eval_data import build_eval_dataset, load_trained_model


@pytest.fixture(scope="module")
def model(trained_ckpt):
    return load_trained_model(trained_ckpt)


def test_denormalize_inverts_the_normalisation():
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 3, 8, 8)).astype(np.float32) / 255
    mean, std = np.array(CIFAR10_MEAN).reshape(1, 3, 1, 1), np.array(CIFAR10_STD).reshape(1, 3, 1, 1)
    restored = visualize.denormalize(((pixels - mean) / std).astype(np.float32), CIFAR10_MEAN, CIFAR10_STD)
    assert restored.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(restored, pixels.transpose(0, 2, 3, 1), atol=1e-6)


@pytest.mark.parametrize("num, shape", [(1, (1, 1)), (6, (2, 3)), (9, (3, 3)), (32, (6, 6))])
def test_grid_shape(num, shape):
    assert visualize.grid_shape(num) == shape


def test_plot_predictions_titles_and_colours(model, real_subset, tmp_path):
    net, meta = model
    dataset, names = build_eval_dataset(meta, real_subset, batch_size=32)
    images, labels = visualize.first_batch(dataset, 32)
    out = tmp_path / "grid.png"
    tiles = visualize.plot_predictions(net, images, labels, names, meta.mean, meta.std, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [tile.true for tile in tiles] == [CLASS_NAMES[i] for i in labels]
    right = [tile for tile in tiles if tile.correct]
    wrong = [tile for tile in tiles if not tile.correct]
    assert right and wrong, "a 15-step model gets some of 32 images right and some wrong"
    assert {tile.color for tile in right} == {"blue"} and {tile.color for tile in wrong} == {"red"}
    assert all(tile.title == f"predict:{tile.pred}" for tile in right)
    assert all(tile.title == f"predict:{tile.pred}\n(true:{tile.true})" for tile in wrong)


def test_visualize_cli_writes_the_grid(trained_ckpt, real_subset, tmp_path, capsys):
    out = tmp_path / "predictions.png"
    code = visualize.main(["--ckpt", str(trained_ckpt), "--data-dir", str(real_subset), "--out", str(out)])
    assert code == 0 and out.is_file()
    assert str(out) in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.png"]  # no temporary file left


def test_visualize_cli_missing_checkpoint_is_a_clear_error(real_subset, tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    code = visualize.main(["--ckpt", str(missing), "--data-dir", str(real_subset), "--out", str(tmp_path / "p.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()
