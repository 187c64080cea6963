"""mindresnet.data.holdout: the stratified seeded --val-split hold-out, and the readers that apply it."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import collect
from mindresnet.data.factory import create_dataset
from mindresnet.data.holdout import Holdout, stratified_split


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
