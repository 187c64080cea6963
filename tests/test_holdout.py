"""Validation hold-out (--val-split): the stratified seeded split, the readers that apply it, and the
training runs that pick their best checkpoint on it and score the test split once at the end."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from conftest import collect
from mindresnet.training.run import fit
from mindresnet.checkpoint import read_checkpoint
from mindresnet.training.config import TrainConfig
from mindresnet.data.factory import create_dataset
from mindresnet.data.holdout import Holdout, stratified_split
from mindresnet.errors import CheckpointError
from mindresnet.training.metrics_log import read_metrics


def tiny_config(data_dir, ckpt_dir, **overrides) -> TrainConfig:
    values = dict(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(data_dir), download=False,
                  epochs=2, batch_size=8, max_steps_per_epoch=1, lr=0.01, optimizer="sgd", workers=1,
                  ckpt_dir=str(ckpt_dir))
    return TrainConfig(**{**values, **overrides})


def test_split_is_stratified_seeded_and_whole():
    labels = np.array([0] * 10 + [1] * 5 + [2])
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert np.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]  # a class of one image stays in training
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(16))
    again_kept, again_held = stratified_split(labels, 0.2, seed=3)
    assert held.tolist() == again_held.tolist() and kept.tolist() == again_kept.tolist()
    assert any(stratified_split(labels, 0.2, seed=s)[1].tolist() != held.tolist() for s in range(4, 10))
    assert Holdout(0.2, 3, "val").indices(labels).tolist() == held.tolist()
    with pytest.raises(ValueError, match="part"):
        Holdout(0.2, 3, "test")


def test_train_and_val_parts_of_cifar10_cover_the_training_images_once(tiny_cifar):
    common = dict(image_size=32, batch_size=7, val_split=0.2, seed=1)
    _, val_labels = collect(create_dataset("cifar10", tiny_cifar, "val", **common).pipeline)
    assert np.bincount(val_labels, minlength=10).tolist() == [2] * 10  # 100 images, 10 per class
    shards = [collect(create_dataset("cifar10", tiny_cifar, "train", shuffle=False, drop_remainder=False,
                                     augment=False, num_shards=2, shard_id=rank, **common).pipeline)[1]
              for rank in (0, 1)]
    assert sum(len(labels) for labels in shards) == 80
    assert np.bincount(np.concatenate(shards), minlength=10).tolist() == [8] * 10


def test_val_split_picks_the_best_and_scores_the_test_split_once(tiny_cifar, tmp_path):
    result = fit(tiny_config(tiny_cifar, tmp_path / "ckpt", val_split=0.2))
    ckpt = tmp_path / "ckpt"
    assert result.selection_split == "val" and result.test["count"] == 20
    rows = read_metrics(ckpt / "metrics.csv")
    assert [row["eval_split"] for row in rows] == ["val", "val"]
    assert np.isnan(rows[0]["test_accuracy"]) and rows[1]["test_accuracy"] == pytest.approx(result.test["accuracy"])
    best = json.loads((ckpt / "best.json").read_text())
    assert (best["selection_split"], best["val_split"], best["val_seed"]) == ("val", 0.2, 1)
    assert best["test"]["accuracy"] == pytest.approx(result.test["accuracy"])
    assert best["best_accuracy"] == pytest.approx(result.best_accuracy)
    _, meta = read_checkpoint(ckpt / "resnet18-last.ckpt")
    assert (meta.val_split, meta.val_seed) == (0.2, 1)


def test_resume_keeps_the_recorded_split(tiny_cifar, tmp_path):
    fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1, val_split=0.2))
    with pytest.raises(CheckpointError, match="val_split=0.2, this run has val_split=0.3"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", resume="true", val_split=0.3))
    with pytest.raises(CheckpointError, match="val_seed=1, this run has val_seed=2"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", resume="true", val_split=0.2, seed=2))
    result = fit(tiny_config(tiny_cifar, tmp_path / "ckpt", resume="true", val_split=0.2))
    assert result.epochs_run == 1 and result.test["count"] == 20


def test_cifar10_default_picks_on_the_test_split_and_says_so(tiny_cifar, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="mindresnet.training"):
        result = fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1))
    assert result.selection_split == "test" and result.test is None
    assert "the test split picks the best checkpoint" in caplog.text
    assert read_metrics(tmp_path / "ckpt" / "metrics.csv")[0]["eval_split"] == "test"
    assert json.loads((tmp_path / "ckpt" / "best.json").read_text())["test"] is None


def test_image_folder_without_val_holds_out_a_tenth(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        folder = tmp_path / "pets" / "train" / name
        folder.mkdir(parents=True)
        for index in range(10):
            Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    with caplog.at_level(logging.INFO, logger="mindresnet.training"):
        result = fit(tiny_config(tmp_path / "pets", tmp_path / "ckpt", dataset="folder", epochs=1,
                                       batch_size=4, image_size=32))
    assert "holding out 0.1 of the training images" in caplog.text
    assert result.selection_split == "val" and result.test is None
    _, meta = read_checkpoint(result.best_path)
    assert meta.val_split == 0.1
