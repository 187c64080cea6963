"""mindresnet.data.balance: inverse-frequency class weights and the balanced sampler (--sampler balanced)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import collect
from mindresnet.data.balance import BalancedSampler, balanced_class_weights
from mindresnet.data.factory import create_dataset, split_labels
from mindresnet.training.progress import epoch_batches, epoch_seed


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
