"""The Preprocess record: its ops, its words, its round trip, and the rules of the dataset kinds."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mindresnet.data.constants import CIFAR10_MEAN, IMAGENET_STD
from mindresnet.data.preprocess import Preprocess, cifar10_preprocess, imagenet_preprocess


def test_cifar10_rule_resizes_the_whole_image_and_keeps_32_as_is():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = cifar10_preprocess(32).apply(Image.fromarray(pixels))
    expected = (pixels.transpose(2, 0, 1) / 255 - np.array(CIFAR10_MEAN)[:, None, None]) / \
        np.array(cifar10_preprocess().std)[:, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert cifar10_preprocess(64).apply(Image.fromarray(pixels)).shape == (3, 64, 64)
    assert cifar10_preprocess(64).describe() == "straight to 64x64 (bilinear)"


@pytest.mark.parametrize("size, resized", [(32, 36), (64, 73), (224, 256)])
def test_imagenet_rule_is_resize_then_centre_crop(size, resized):
    rule = imagenet_preprocess(size)
    assert rule.resize_size == resized and rule.std == IMAGENET_STD
    assert rule.describe() == f"shorter side to {resized} px (bilinear), then centre crop {size}x{size}"
    assert rule.apply(Image.new("RGB", (90, 50))).shape == (3, size, size)


def test_squash_with_a_crop_describes_both():
    assert Preprocess(32, "squash", 0.8).describe() == "straight to 40x40 (bilinear), then centre crop 32x32"


def test_round_trip_and_size_change():
    rule = Preprocess(48, "shorter", 0.9, "bicubic", (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert Preprocess.from_dict(rule.to_dict()) == rule
    assert rule.with_size(96) == Preprocess(96, "shorter", 0.9, "bicubic", (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))


@pytest.mark.parametrize("changes, message", [
    (dict(size=0), "size"), (dict(resize="stretch"), "resize"), (dict(crop_pct=1.5), "crop_pct"),
    (dict(interpolation="lanczos"), "interpolation"), (dict(mean=(0.5,)), "mean and std"),
])
def test_bad_values_are_refused(changes, message):
    values = {**imagenet_preprocess().to_dict(), **changes}
    with pytest.raises(ValueError, match=message):
        Preprocess.from_dict(values)
