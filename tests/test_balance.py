"""Imbalanced classes: --class-weights balanced and --sampler balanced, on a generated imbalanced folder."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import collect
from mindresnet.training.config import TrainConfig
from mindresnet.data.balance import BalancedSampler, balanced_class_weights
from mindresnet.data.factory import create_dataset, split_labels
from mindresnet.data.holdout import Holdout
from mindresnet.training.features import HeadTrainer
from mindresnet.training.loss import class_weights_for, loss_for
from mindresnet.training.progress import epoch_batches, epoch_seed

COUNTS = {"common": 24, "middling": 6, "rare": 2}


@pytest.fixture
def imbalanced_root(tmp_path) -> Path:
    """root/train/<class>/ with 24, 6 and 2 small PNGs; root/val/<class>/ 2 each."""
    root = tmp_path / "imbalanced"
    rng = np.random.default_rng(0)
    for name, count in COUNTS.items():
        for split, images in (("train", count), ("val", 2)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(images):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root


def _labels(pipeline, seed: int, epoch: int, skip: int = 0) -> np.ndarray:
    return np.concatenate([labels.asnumpy() for _, labels in epoch_batches(pipeline, seed, epoch, skip)])


def test_balanced_class_weights_are_inverse_frequencies(imbalanced_root):
    labels = split_labels("folder", imbalanced_root)
    np.testing.assert_array_equal(np.bincount(labels), [24, 6, 2])  # common, middling, rare (sorted names)
    weights = balanced_class_weights(labels, 3)
    np.testing.assert_allclose(weights, [32 / (3 * 24), 32 / (3 * 6), 32 / (3 * 2)], rtol=1e-6)
    assert weights[labels].mean() == pytest.approx(1.0)


def test_balanced_sampler_draws_classes_uniformly_per_seed_and_epoch(imbalanced_root):
    pipeline = create_dataset("folder", imbalanced_root, "train", image_size=32, batch_size=4, workers=1,
                              augment=False, sampler="balanced").pipeline
    epochs = [_labels(pipeline, seed=3, epoch=epoch) for epoch in range(8)]
    assert all(len(labels) == 32 for labels in epochs)  # an epoch is as long as the split
    shares = np.bincount(np.concatenate(epochs), minlength=3) / (32 * 8)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.08)  # plain shuffling: 0.75, 0.19, 0.06
    np.testing.assert_array_equal(_labels(pipeline, seed=3, epoch=1), epochs[1])
    assert not np.array_equal(epochs[0], epochs[1])
    # Resuming at step 3 of epoch 1 sees the rest of the very same epoch.
    np.testing.assert_array_equal(_labels(pipeline, seed=3, epoch=1, skip=3), epochs[1][3 * 4:])


def test_balanced_sampler_shards_one_global_order():
    labels = np.repeat([0, 1, 2], [24, 6, 3])  # 33 rows: padded to 34 for two ranks
    seed = epoch_seed(3, 0)
    whole = BalancedSampler(labels, 2, 0)
    global_order = np.empty(34, np.int64)
    for shard in (0, 1):
        sampler = BalancedSampler(labels, 2, shard)
        assert len(sampler) == 17
        global_order[shard::2] = sampler.epoch_order(seed)
    np.testing.assert_array_equal(whole.epoch_order(seed), global_order[0::2])
    assert set(global_order) <= set(range(33))


def test_sampler_leaves_evaluation_alone(imbalanced_root):
    common = dict(image_size=32, batch_size=4, workers=1)
    _, plain = collect(create_dataset("folder", imbalanced_root, "eval", **common).pipeline)
    _, sampled = collect(create_dataset("folder", imbalanced_root, "eval", sampler=None, **common).pipeline)
    np.testing.assert_array_equal(plain, sampled)


@pytest.mark.parametrize("options", [dict(), dict(label_smoothing=0.1), dict(mixup=0.2, cutmix=1.0)])
def test_weighted_loss_counts_rare_mistakes_more(imbalanced_root, options):
    import mindspore as ms

    weighted = loss_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root), class_weights="balanced",
                                    **options), 3)
    plain = loss_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root), **options), 3)
    logits = ms.Tensor(np.array([[4.0, 0.0, 0.0]] * 2, np.float32))  # both images called "common"
    labels = np.array([0, 2], np.int32)  # one common (right), one rare (wrong)
    targets = ms.Tensor(np.eye(3, dtype=np.float32)[labels] if options.get("mixup") else labels)
    weighted_loss, plain_loss = float(weighted(logits, targets).asnumpy()), float(plain(logits, targets).asnumpy())
    assert math.isfinite(weighted_loss) and weighted_loss > 1.3 * plain_loss
    if not options:  # integer labels: the weighted mean of the two images' losses
        losses = -np.log(np.exp([4.0, 0.0]) / (np.exp(4.0) + 2))
        w_common, w_rare = 32 / (3 * 24), 32 / (3 * 2)
        assert weighted_loss == pytest.approx((w_common * losses[0] + w_rare * losses[1]) / (w_common + w_rare),
                                              rel=1e-5)


def test_class_weights_count_only_the_images_trained_on(imbalanced_root):
    labels = split_labels("folder", imbalanced_root)
    whole = class_weights_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root), class_weights="balanced"), 3)
    np.testing.assert_allclose(whole, balanced_class_weights(labels, 3))
    held = class_weights_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root), class_weights="balanced",
                                         val_split=0.25, seed=4), 3)
    kept = labels[Holdout(0.25, 4, "train").indices(labels)]
    assert np.bincount(kept).tolist() == [18, 4, 1]
    np.testing.assert_allclose(held, [23 / 54, 23 / 12, 23 / 3], rtol=1e-6)
    assert class_weights_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root)), 3) is None


def test_head_epochs_draw_balanced_with_the_sampler():
    from mindresnet.training.loss import build_loss
    from mindresnet.training.optim import build_optimizer
    from mindresnet.models import create_model

    labels = np.repeat(np.arange(3, dtype=np.int32), [90, 8, 2])
    net = create_model("resnet18", num_classes=3, stem="cifar")
    optimizer = build_optimizer(net.get_classifier().trainable_params(), "sgd", [0.01], 0.9, 0.0)
    shuffled = HeadTrainer(net, optimizer, build_loss(), batch_size=16, seed=3)
    balanced = HeadTrainer(net, optimizer, build_loss(), batch_size=16, seed=3, balanced=True)
    plain_order = np.concatenate(shuffled.epoch_order(labels, 0))
    assert sorted(plain_order.tolist()) == list(range(100))
    draws = [np.concatenate(balanced.epoch_order(labels, epoch)) for epoch in range(20)]
    assert all(len(order) == 100 for order in draws)
    np.testing.assert_array_equal(draws[0], np.concatenate(balanced.epoch_order(labels, 0)))  # resumable
    assert not np.array_equal(draws[0], draws[1])
    share = np.bincount(labels[np.concatenate(draws)], minlength=3) / 2000
    np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.04)  # the 2-image class as often as the 90-image one


@pytest.mark.slow
def test_fit_with_class_weights_and_balanced_sampler(imbalanced_root, tmp_path):
    from mindresnet.training.run import fit

    result = fit(TrainConfig(arch="resnet18", stem="cifar", pretrained="false", dataset="folder",
                             data_dir=str(imbalanced_root), image_size=32, epochs=1, batch_size=8,
                             max_steps_per_epoch=2, lr=0.01, optimizer="sgd", class_weights="balanced",
                             sampler="balanced", mixup=0.2, label_smoothing=0.1, ckpt_dir=str(tmp_path / "ckpt"),
                             workers=1))
    assert math.isfinite(result.history[0]["loss"]) and result.best_path is not None
