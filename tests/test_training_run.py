"""mindresnet.training.run: what fit leaves behind: checkpoints, metrics, best.json, the test report, its guards."""
from __future__ import annotations

import json
import logging
import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import dataset as ds
from PIL import Image

from mindresnet.checkpoint import read_checkpoint, save_checkpoint
from mindresnet.data.factory import split_labels
from mindresnet.errors import CheckpointError, ConfigError, TrainingDiverged
from mindresnet.models.pretrained import OPTIMIZER_PREFIXES
from mindresnet.report import RELIABILITY_PNG
from mindresnet.training.config import TrainConfig
from mindresnet.training.metrics_log import read_metrics
from mindresnet.training.run import TopKCheckpoints, fit

from conftest import fit_config, one_step_config, tiny_config, tiny_mlp


def test_two_epoch_run_writes_checkpoints_metrics_and_curves(tiny_cifar, tmp_path):
    result = fit(tiny_config(tiny_cifar, tmp_path / "ckpt"))
    ckpt = tmp_path / "ckpt"
    assert result.global_step == 4 and result.epochs_run == 2
    assert result.best_path == ckpt / "resnet18-best.ckpt"
    for name in ("resnet18-best.ckpt", "resnet18-last.ckpt", "metrics.csv", "training_curves.png", "config.yaml"):
        assert (ckpt / name).stat().st_size > 0, name
    params, meta = read_checkpoint(ckpt / "resnet18-best.ckpt")
    assert meta.arch == "resnet18" and meta.num_classes == 10 and meta.stem == "cifar"
    assert meta.class_names[0] == "airplane" and len(meta.mean) == 3 and meta.image_size == 32
    assert meta.accuracy == pytest.approx(result.best_accuracy)
    assert not any(name.startswith(OPTIMIZER_PREFIXES) for name in params)  # best: weights only
    last_params, last_meta = read_checkpoint(ckpt / "resnet18-last.ckpt")
    assert last_meta.epoch == 2 and {"accum.fc.weight", "stat.fc.weight"} <= set(last_params)
    rows = read_metrics(ckpt / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 and r["images_per_s"] > 0 for r in rows)
    assert rows[0]["lr"] > rows[1]["lr"]  # cosine decays
    assert not list(ckpt.glob(".*tmp*")), "no temporary files may remain"


def test_nan_loss_stops_the_run_and_keeps_the_best_checkpoint(tiny_cifar, tmp_path):
    fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1))
    best = tmp_path / "ckpt" / "resnet18-best.ckpt"
    before = best.read_bytes()
    diverging = tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=3, resume=True, lr=1e38, min_lr=1e37,
                            max_steps_per_epoch=6)
    with pytest.raises(TrainingDiverged, match="Lower --lr"):
        fit(diverging)
    assert best.read_bytes() == before


def test_init_from_starts_a_new_run_from_the_weights_alone(tiny_cifar, tmp_path):
    fit(tiny_config(tiny_cifar, tmp_path / "old", epochs=1))
    source = tmp_path / "old" / "resnet18-last.ckpt"  # with optimizer state and epoch, both left behind
    # Its arch and stem replace the flags'; a learning rate of ~0 keeps the weights where they started.
    result = fit(tiny_config(tiny_cifar, tmp_path / "new", epochs=1, arch="resnet50", stem="imagenet",
                             init_from=str(source), lr=1e-30, min_lr=0.0))
    assert result.global_step == 2 and [r["epoch"] for r in result.history] == [1]
    params, meta = read_checkpoint(tmp_path / "new" / "resnet18-best.ckpt")
    assert (meta.arch, meta.stem, meta.epoch) == ("resnet18", "cifar", 1)
    started, _ = read_checkpoint(source)
    for name in ("conv1.weight", "layer4.1.conv2.weight", "fc.weight"):
        np.testing.assert_allclose(params[name].asnumpy(), started[name].asnumpy(), atol=1e-6, err_msg=name)
    with pytest.raises(CheckpointError, match="--init-from .*plain.ckpt has no mindresnet metadata"):
        ms.save_checkpoint(ms.nn.Dense(2, 2), str(tmp_path / "plain.ckpt"))
        fit(tiny_config(tiny_cifar, tmp_path / "other", init_from=str(tmp_path / "plain.ckpt")))


def test_class_count_must_match_the_dataset(tiny_cifar, tmp_path):
    with pytest.raises(ConfigError, match="--num-classes 7 does not match the 10 classes"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", num_classes=7))


def test_eval_every_evaluates_on_schedule(tiny_cifar, tmp_path):
    result = fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=3, eval_every=2, max_steps_per_epoch=1))
    assert ["accuracy" in row for row in result.history] == [False, True, True]  # epoch 2, and the last


def test_fit_on_an_image_folder_writes_class_indices(tmp_path):
    import json

    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog", "fox"):
            folder = tmp_path / "pets" / split / name
            folder.mkdir(parents=True)
            for index in range(4):
                Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    config = tiny_config(tmp_path / "pets", tmp_path / "ckpt", dataset="folder", epochs=1, batch_size=4,
                         image_size=32)
    result = fit(config)
    assert json.loads((tmp_path / "ckpt" / "class_indices.json").read_text()) == {"0": "cat", "1": "dog", "2": "fox"}
    _, meta = read_checkpoint(result.best_path)
    assert (meta.dataset, meta.class_names, meta.num_classes) == ("folder", ["cat", "dog", "fox"], 3)


def test_divergence_at_the_last_step_of_an_epoch_writes_nothing(tiny_cifar, tmp_path):
    fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1))
    files = {path: path.read_bytes() for path in (tmp_path / "ckpt").iterdir() if path.suffix in (".ckpt", ".csv")}
    # One step: its loss is finite, the update it makes (an LR beyond float32) is not.
    diverging = tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=2, resume=True, lr=1e300, min_lr=1e299,
                            max_steps_per_epoch=1)
    with pytest.raises(TrainingDiverged, match="parameters became NaN or infinite after epoch 2.*Lower --lr"):
        fit(diverging)
    assert {path: path.read_bytes() for path in files} == files


def test_top_k_keeps_the_best_ranked(tmp_path):
    keeper = TopKCheckpoints(tmp_path, "resnet18", 2)
    net = tiny_mlp()

    ranks = [keeper.offer(accuracy, lambda path: save_checkpoint(net, path)) for accuracy in (0.3, 0.5, 0.4, 0.2, 0.6)]
    assert ranks == [1, 1, 2, None, 1]
    assert keeper.scores() == [0.6, 0.5]
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["resnet18-top1.ckpt", "resnet18-top2.ckpt"]
    assert read_checkpoint(tmp_path / "resnet18-top2.ckpt")[0]["0.weight"] is not None
    assert TopKCheckpoints(tmp_path, "resnet18", 2).scores() == [0.6, 0.5]  # a resumed run's view


def test_auto_augment_changes_the_training_images(tiny_cifar):
    from conftest import collect
    from mindresnet.training.config import TrainConfig
    from mindresnet.distributed import DistInfo
    from mindresnet.errors import ConfigError
    from mindresnet.data.factory import get_dataset_kind
    from mindresnet.training.run import build_datasets

    def first_images(auto_augment):
        config = fit_config(tiny_cifar, "unused", auto_augment=auto_augment)
        ds.config.set_seed(5)
        data = build_datasets(config, DistInfo(), get_dataset_kind(config.dataset).preprocess(config.image_size), 0.0)
        return collect(data.train.pipeline)[0]

    plain = first_images(None)
    np.testing.assert_array_equal(first_images(None), plain)  # same seed, same crops and flips
    for name in ("randaugment", "autoaugment"):
        assert not np.array_equal(first_images(name), plain), name
    with pytest.raises(ConfigError, match="--auto-augment must be one of"):
        TrainConfig(auto_augment="trivial").validate()


def test_keep_best_and_early_stop_through_fit(tiny_cifar, tmp_path):
    import json

    from mindresnet.training.run import fit

    # A frozen backbone and a vanishing LR: the test accuracy cannot improve after the first epoch.
    result = fit(fit_config(tiny_cifar, tmp_path / "ckpt", epochs=5, max_steps_per_epoch=1, freeze_backbone=True,
                            lr=1e-9, min_lr=0.0, early_stop=2, keep_best=2))
    assert result.epochs_run == 3 and len(result.history) == 3  # stopped after 2 evaluations without progress
    ckpt = tmp_path / "ckpt"
    ranking = json.loads((ckpt / "resnet18-top.json").read_text())
    assert len(ranking) == 2 and ranking == sorted(ranking, reverse=True)
    for rank, score in enumerate(ranking, 1):
        assert read_checkpoint(ckpt / f"resnet18-top{rank}.ckpt")[1].accuracy == pytest.approx(score)
    assert not (ckpt / "resnet18-top3.ckpt").exists()


def test_val_split_picks_the_best_and_scores_the_test_split_once(tiny_cifar, tmp_path):
    result = fit(one_step_config(tiny_cifar, tmp_path / "ckpt", val_split=0.2))
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


def test_cifar10_default_picks_on_the_test_split_and_says_so(tiny_cifar, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="mindresnet.training"):
        result = fit(one_step_config(tiny_cifar, tmp_path / "ckpt", epochs=1))
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
        result = fit(one_step_config(tmp_path / "pets", tmp_path / "ckpt", dataset="folder", epochs=1,
                                     batch_size=4, image_size=32))
    assert "holding out 0.1 of the training images" in caplog.text
    assert result.selection_split == "val" and result.test is None
    _, meta = read_checkpoint(result.best_path)
    assert meta.val_split == 0.1


def test_training_run_ends_with_the_full_test_report(tiny_cifar, tmp_path, caplog):
    from mindresnet.training.config import TrainConfig
    from mindresnet.training.run import TEST_REPORT, fit

    ckpt = tmp_path / "ckpt"
    with caplog.at_level("INFO", logger="mindresnet.training"):
        result = fit(TrainConfig(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(tiny_cifar),
                                 download=False, epochs=1, batch_size=8, max_steps_per_epoch=1, optimizer="sgd",
                                 workers=1, val_split=0.2, ckpt_dir=str(ckpt)))
    report = json.loads((ckpt / TEST_REPORT).read_text())
    assert report["count"] == 20 and {"precision", "recall", "f1"} <= set(report["per_class"][0])
    assert result.test["macro_f1"] == pytest.approx(report["macro_avg"]["f1"])
    assert result.test["ece"] == pytest.approx(report["ece"])
    assert "weighted avg" in caplog.text
    for png in ("test_confusion_matrix.png", f"test_{RELIABILITY_PNG}"):
        assert (ckpt / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_fit_with_class_weights_and_balanced_sampler(imbalanced_root, tmp_path, monkeypatch):
    from mindresnet.training import loss
    from mindresnet.training.run import fit

    reads = []
    monkeypatch.setattr(loss, "split_labels", lambda *args: reads.append(args) or split_labels(*args))
    result = fit(TrainConfig(arch="resnet18", stem="cifar", pretrained="false", dataset="folder",
                             data_dir=str(imbalanced_root), image_size=32, epochs=2, freeze_epochs=1, batch_size=8,
                             max_steps_per_epoch=2, lr=0.01, optimizer="sgd", class_weights="balanced",
                             sampler="balanced", mixup=0.2, label_smoothing=0.1, ckpt_dir=str(tmp_path / "ckpt"),
                             workers=1))
    assert len(result.history) == 2 and result.best_path is not None
    assert all(math.isfinite(row["loss"]) for row in result.history)
    assert len(reads) == 1  # the head and full stages share one loss: the labels are read once
