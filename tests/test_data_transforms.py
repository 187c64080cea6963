"""mindresnet.data.transforms: mixup/cutmix, auto-augment, random erasing and colour jitter."""
from __future__ import annotations

import numpy as np
import pytest
from mindspore import dataset as ds

from conftest import collect
from mindresnet.data.factory import create_dataset
from mindresnet.data.transforms import auto_augment_ops, mix_batches


def test_mixup_and_cutmix_turn_labels_into_soft_targets():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    labels = (np.arange(16) % 4).astype(np.int32)
    for mixup, cutmix in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        pipeline = ds.NumpySlicesDataset((images, labels), ["image", "label"], shuffle=False).batch(8)
        mixed = list(mix_batches(pipeline, 4, mixup, cutmix).create_tuple_iterator(output_numpy=True))
        soft = np.concatenate([label for _, label in mixed])
        assert soft.shape == (16, 4) and soft.dtype == np.float32
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
        assert ((soft > 0) & (soft < 1)).any(), (mixup, cutmix)  # some targets are mixtures
        assert not np.array_equal(np.concatenate([image for image, _ in mixed]), images)
    plain = ds.NumpySlicesDataset((images, labels), ["image", "label"], shuffle=False).batch(8)
    assert mix_batches(plain, 4) is plain


def test_auto_augment_changes_images():
    from mindspore import dataset as ds

    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    previous = ds.config.get_seed()
    ds.config.set_seed(7)  # each policy applies its ops with some probability: no test order may decide
    for name in ("randaugment", "autoaugment"):
        (op,) = auto_augment_ops(name)
        outputs = [op(image) for _ in range(20)]
        assert all(out.shape == image.shape and out.dtype == np.uint8 for out in outputs)
        assert any(not np.array_equal(out, image) for out in outputs), name
    ds.config.set_seed(previous)
    assert auto_augment_ops(None) == []
    with pytest.raises(ValueError, match="auto-augment"):
        auto_augment_ops("trivial")


def _exact_zeros(images: np.ndarray) -> np.ndarray:
    """Pixels per image equal to 0.0 exactly: what erasing writes (a normalised CIFAR pixel never is 0)."""
    return (images == 0.0).reshape(len(images), -1).sum(axis=1)


def test_random_erasing_changes_training_batches_only(tiny_cifar):
    common = dict(image_size=32, batch_size=10, workers=1, reprob=1.0, color_jitter=0.4)
    train, _ = collect(create_dataset("cifar10", tiny_cifar, "train", shuffle=False, **common).pipeline)
    assert (_exact_zeros(train) > 0).all()
    plain, _ = collect(create_dataset("cifar10", tiny_cifar, "train", shuffle=False, image_size=32, batch_size=10,
                                      workers=1).pipeline)
    assert (_exact_zeros(plain) == 0).all()
    test, _ = collect(create_dataset("cifar10", tiny_cifar, "eval", **common).pipeline)
    reference, _ = collect(create_dataset("cifar10", tiny_cifar, "eval", image_size=32, batch_size=10).pipeline)
    np.testing.assert_array_equal(test, reference)


def test_color_jitter_changes_training_pixels_only():
    from mindspore.dataset import NumpySlicesDataset, vision

    from mindresnet.data.transforms import cifar10_transforms, color_jitter_ops, folder_transforms
    from mindresnet.data.preprocess import cifar10_preprocess

    images = np.random.default_rng(0).integers(40, 216, size=(16, 32, 32, 3), dtype=np.uint8)
    jittered = np.stack([row[0] for row in NumpySlicesDataset((images,), ["image"], shuffle=False)
                         .map(color_jitter_ops(0.4), ["image"]).create_tuple_iterator(output_numpy=True)])
    assert jittered.shape == images.shape and jittered.dtype == np.uint8
    changed = [not np.array_equal(a, b) for a, b in zip(images, jittered)]
    assert sum(changed) >= 14  # a factor of exactly 1 on all three properties is unlikely
    mean_ratio = jittered.reshape(16, -1).mean(1) / images.reshape(16, -1).mean(1)
    assert mean_ratio.std() > 0.01  # each image draws its own factors
    assert color_jitter_ops(0.0) == []
    preprocess = cifar10_preprocess(32)
    for make in (cifar10_transforms, folder_transforms):
        assert any(isinstance(op, vision.RandomColorAdjust) for op in make(True, preprocess, color_jitter=0.4))
        assert not any(isinstance(op, vision.RandomColorAdjust) for op in make(False, preprocess, color_jitter=0.4))
