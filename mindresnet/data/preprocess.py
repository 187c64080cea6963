"""How an image becomes a model's input: the one :class:`Preprocess` record and the ops built from it.

As torchvision's ``weights.transforms()`` and timm's ``resolve_data_config``: output size, resize
rule, interpolation, mean and std live in one frozen record. Each dataset kind and each published
weights entry names its own (:func:`cifar10_preprocess`, :func:`imagenet_preprocess`), training
stores it in the checkpoint, and training-time evaluation, ``evaluate``, ``predict``,
``visualize`` and ``export`` all read it from there; nothing guesses it from the image size.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np
from mindspore.dataset import transforms, vision
from PIL import Image

from mindresnet.data.constants import CIFAR10_MEAN, CIFAR10_SIZE, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD

# "shorter": the shorter side to size / crop_pct, aspect kept; "squash": both sides to size / crop_pct.
RESIZE_MODES = ("shorter", "squash")
INTERPOLATIONS = {"bilinear": vision.Inter.LINEAR, "bicubic": vision.Inter.BICUBIC,
                  "nearest": vision.Inter.NEAREST}
IMAGENET_CROP_PCT = 224 / 256  # the ImageNet eval recipe: Resize(256) + CenterCrop(224)


@dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing of one RGB image: resize, centre crop ``size`` x ``size``, scale, normalise.

    Attributes:
        size: side of the square model input.
        resize: ``shorter`` (shorter side to ``resize_size``, aspect kept) or ``squash`` (both sides).
        crop_pct: ``size / resize_size``: the part of the resized image the centre crop keeps.
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.
        mean: per-channel mean on the [0, 1] scale, RGB order.
        std: per-channel standard deviation on the [0, 1] scale.
    """

    size: int
    resize: str = "shorter"
    crop_pct: float = IMAGENET_CROP_PCT
    interpolation: str = "bilinear"
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD

    def __post_init__(self):
        if int(self.size) < 1:
            raise ValueError(f"preprocess size must be >= 1, got {self.size}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"preprocess resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if not 0 < float(self.crop_pct) <= 1:
            raise ValueError(f"preprocess crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"preprocess interpolation must be one of {tuple(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("preprocess mean and std need 3 values (R, G, B)")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def resize_size(self) -> int:
        """Side (``shorter``: shorter side) the image is resized to before the centre crop."""
        return math.floor(self.size / self.crop_pct)

    def resize_ops(self) -> List:
        """MindSpore ops: resize and centre crop an HWC uint8 image to ``size`` x ``size``."""
        inter = INTERPOLATIONS[self.interpolation]
        scale = self.resize_size
        if self.resize == "shorter":
            return [vision.Resize(scale, inter), vision.CenterCrop(self.size)]
        ops = [vision.Resize((scale, scale), inter)]
        return ops + [vision.CenterCrop(self.size)] if scale != self.size else ops

    def normalize_ops(self) -> List:
        """MindSpore ops: rescale to [0, 1], normalise per channel, HWC -> CHW."""
        return [vision.Rescale(1.0 / 255.0, 0.0), vision.Normalize(list(self.mean), list(self.std)), vision.HWC2CHW()]

    def ops(self) -> List:
        """The whole eval transform: HWC uint8 RGB image of any size -> float32 CHW array."""
        return self.resize_ops() + self.normalize_ops()

    def apply(self, image: Image.Image) -> np.ndarray:
        """One PIL image (any mode: RGBA, L, P, ... is converted to RGB) as a float32 (3, size, size) array."""
        rgb = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        return np.asarray(transforms.Compose(self.ops())(rgb), dtype=np.float32)

    def describe(self) -> str:
        """The resize rule in words, e.g. ``shorter side to 256 px (bilinear), then centre crop 224x224``."""
        size, scale = self.size, self.resize_size
        if self.resize == "shorter":
            return f"shorter side to {scale} px ({self.interpolation}), then centre crop {size}x{size}"
        if scale == size:
            return f"straight to {size}x{size} ({self.interpolation})"
        return f"straight to {scale}x{scale} ({self.interpolation}), then centre crop {size}x{size}"

    def with_size(self, size: int) -> "Preprocess":
        """The same rule at another output size."""
        return dataclasses.replace(self, size=int(size))

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict."""
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Preprocess":
        """Inverse of :meth:`to_dict`; TypeError or ValueError on unknown keys or bad values."""
        return cls(**data)


def cifar10_preprocess(size: int = CIFAR10_SIZE) -> Preprocess:
    """CIFAR-10's: the whole 32x32 image resized straight to ``size`` (no crop), CIFAR-10 statistics."""
    return Preprocess(size, resize="squash", crop_pct=1.0, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def imagenet_preprocess(size: int = 224) -> Preprocess:
    """ImageNet's: shorter side to size * 256/224, centre crop ``size``, ImageNet statistics."""
    return Preprocess(size, resize="shorter", crop_pct=IMAGENET_CROP_PCT, mean=IMAGENET_MEAN, std=IMAGENET_STD)
