"""Imbalanced classes: inverse-frequency class weights and a class-balanced sampler.

``--class-weights balanced`` weights each class's loss by ``images / (classes x its images)``
(scikit-learn's "balanced": the weights average 1 over the training images).
``--sampler balanced`` replaces the shuffle: each epoch draws as many images as the split holds,
each by picking a class uniformly and then one of its images (with replacement), so a rare
class is seen as often as a common one.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
from mindspore import dataset as ds


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Per-class loss weights ``len(labels) / (present classes x count)`` as float32; 1 for absent classes."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)[:num_classes]
    present = counts > 0
    weights = np.ones(num_classes, np.float32)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


class BalancedSampler(ds.Sampler):
    """Indices of a class-balanced epoch, for any MindSpore dataset that takes a ``sampler``.

    The draw is seeded by the data pipeline's seed when an epoch's iterator starts
    (:func:`mindresnet.training.progress.epoch_batches` sets it from (seed, epoch)), so every rank draws
    the same global order and a resumed epoch repeats it; rank ``shard_id`` of ``num_shards``
    takes every ``num_shards``-th index of it (the order is padded to a multiple of the ranks).

    Args:
        labels: the class of each row of the dataset, in its order.
        num_shards, shard_id: data-parallel ranks and this one (None: one process).
    """

    def __init__(self, labels: Sequence[int], num_shards: Optional[int] = None, shard_id: Optional[int] = None):
        labels = np.asarray(labels, np.int64)
        if labels.size == 0:
            raise ValueError("BalancedSampler needs at least one labelled row.")
        self.shards, self.shard_id = int(num_shards or 1), int(shard_id or 0)
        self.members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
        self.per_shard = -(-labels.size // self.shards)
        super().__init__(num_samples=self.per_shard)

    def __len__(self) -> int:
        return self.per_shard

    def epoch_order(self, seed: int) -> np.ndarray:
        """This rank's row indices for the epoch whose pipeline seed is ``seed``."""
        rng = np.random.default_rng(int(seed))
        total = self.per_shard * self.shards
        classes = rng.integers(len(self.members), size=total)
        sizes = np.array([len(members) for members in self.members])
        picks = (rng.random(total) * sizes[classes]).astype(np.int64)
        order = np.array([self.members[c][p] for c, p in zip(classes, picks)], np.int64)
        return order[self.shard_id::self.shards]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order(ds.config.get_seed()).tolist())
