"""Regularisers of issue #23: stochastic depth (--drop-path), random erasing (--reprob), colour jitter."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from conftest import collect
from mindresnet.training.config import parse_args
from mindresnet.data.factory import create_dataset
from mindresnet.models import create_model
from mindresnet.models.blocks import DropPath


def _pair(arch="resnet18", rate=0.5):
    """(network with drop-path, the same weights without it)."""
    ms.set_seed(0)
    plain = create_model(arch, num_classes=10, stem="cifar")
    dropping = create_model(arch, num_classes=10, stem="cifar", drop_path=rate)
    ms.load_param_into_net(dropping, {p.name: p for p in plain.get_parameters()}, strict_load=True)
    return plain, dropping


def test_drop_path_keeps_parameter_names_and_scales_with_depth():
    plain, dropping = _pair()
    assert [p.name for p in plain.get_parameters()] == [p.name for p in dropping.get_parameters()]
    rates = [cell.drop_path.rate if cell.drop_path is not None else 0.0
             for layer in (dropping.layer1, dropping.layer2, dropping.layer3, dropping.layer4) for cell in layer]
    np.testing.assert_allclose(rates, np.linspace(0, 0.5, 8))


@pytest.mark.parametrize("arch", ["resnet50", "resnext50_32x4d"])
def test_drop_path_in_every_bottleneck_block(arch):
    net = create_model(arch, num_classes=10, stem="cifar", drop_path=0.2)
    drops = [cell for _, cell in net.cells_and_names() if isinstance(cell, DropPath)]
    assert len(drops) == 16 - 1  # every block but the first, whose rate is 0
    assert max(cell.rate for cell in drops) == pytest.approx(0.2)


def test_drop_path_varies_training_outputs_only():
    plain, dropping = _pair()
    images = ms.Tensor(np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32))
    for net in (plain, dropping):
        net.set_train(False)
    eval_out = dropping(images).asnumpy()
    np.testing.assert_array_equal(eval_out, dropping(images).asnumpy())
    np.testing.assert_allclose(eval_out, plain(images).asnumpy(), rtol=1e-5, atol=1e-5)
    dropping.set_train(True)
    plain.set_train(True)
    assert not np.allclose(dropping(images).asnumpy(), dropping(images).asnumpy())
    np.testing.assert_array_equal(plain(images).asnumpy(), plain(images).asnumpy())


def test_flags_and_mindcv_spellings():
    config = parse_args(["--re_prob", "0.25", "--drop_path_rate", "0.1", "--color-jitter", "0.4"])
    assert (config.reprob, config.drop_path, config.color_jitter) == (0.25, 0.1, 0.4)
    assert parse_args(["--reprob", "0.5", "--drop-path", "0.2"]).drop_path == 0.2


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
