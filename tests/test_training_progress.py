"""mindresnet.training.progress: each epoch's data order, reproducible from the seed and the epoch."""
from __future__ import annotations

import numpy as np

from mindresnet.training.progress import epoch_batches, epoch_seed


def batches_of(dataset, seed, epoch, skip=0, count=4):
    out = []
    for images, labels in epoch_batches(dataset, seed, epoch, skip):
        out.append((images.asnumpy(), labels.asnumpy()))
        if len(out) == count:
            break
    return out


def test_each_epoch_has_its_own_order_reproducible_from_seed_and_epoch(tiny_cifar):
    from mindresnet.data import create_dataset_cifar10

    assert len({epoch_seed(1, 0), epoch_seed(1, 1), epoch_seed(2, 0)}) == 3
    dataset, _ = create_dataset_cifar10(tiny_cifar, "train", batch_size=8, workers=2)
    epoch0, epoch1 = batches_of(dataset, 1, 0), batches_of(dataset, 1, 1)
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])  # reshuffled and re-augmented
    fresh, _ = create_dataset_cifar10(tiny_cifar, "train", batch_size=8, workers=2)
    again = batches_of(fresh, 1, 1)  # a new pipeline (as in a resumed process), epoch 1 first
    resumed = batches_of(dataset, 1, 1, skip=2, count=2)
    for (images, labels), (images2, labels2) in zip(epoch1, again):
        np.testing.assert_array_equal(images, images2)
        np.testing.assert_array_equal(labels, labels2)
    for (images, labels), (images2, labels2) in zip(epoch1[2:], resumed):
        np.testing.assert_array_equal(images, images2)
        np.testing.assert_array_equal(labels, labels2)
