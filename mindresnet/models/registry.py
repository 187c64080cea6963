"""The one table of model variants and their published weights.

Add a variant by adding a row to :data:`VARIANTS` (and, for an importable builder, a line at the
bottom of :mod:`mindresnet.models.factory`); add published weights by giving its row a
:class:`Weights` entry. Everything that loading and preprocessing need comes from that entry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from mindresnet.data.imagenet import imagenet_class_names
from mindresnet.data.preprocess import Preprocess, imagenet_preprocess
from mindresnet.errors import ConfigError
from mindresnet.models.blocks import Block, ResidualBlock, ResidualBlockBase

TUTORIAL_URL = ("https://mindspore-website.obs.cn-north-4.myhuaweicloud.com/notebook/models/"
                "application/resnet50_224_new.ckpt")
MINDCV_URL = "https://download.mindspore.cn/toolkits/mindcv/"
TORCHVISION_URL = "https://download.pytorch.org/models/"
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[a-z]+$")  # MindCV and torchvision: "<name>-<sha256 prefix>.<ext>"


@dataclass(frozen=True)
class Weights:
    """Published ImageNet weights of a variant: where they are and how to use them.

    Attributes:
        tag: short name among the variant's weights (``pretrained=<tag>`` picks them).
        url: download address; its file name is the cache name.
        naming: parameter naming scheme of the file (:data:`mindresnet.models.naming.NAMINGS`).
        convention: the padding/BatchNorm convention they were trained in (built when loading).
        num_classes: head size; 1001 is mindspore/models' head with a background class first.
        preprocess: the preprocessing they were trained with (ImageNet's at 224).
        sha256: full SHA-256 of the file, when published.
    """

    tag: str
    url: str
    naming: str
    convention: str
    num_classes: int = 1000
    preprocess: Preprocess = imagenet_preprocess()
    sha256: Optional[str] = None

    @property
    def file_name(self) -> str:
        """The file name in the URL (and in the cache)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> Optional[str]:
        """The leading hex digits of the SHA-256 that MindCV and torchvision put in their file names."""
        match = HASH_IN_NAME.search(self.file_name)
        return match.group(1) if match else None

    def class_names(self) -> List[str]:
        """ImageNet names of the head's outputs (background first for a 1001-class head)."""
        return imagenet_class_names(self.num_classes)


@dataclass(frozen=True)
class Variant:
    """Architecture of one model: block type, blocks per stage, ResNeXt grouping, weights.

    ``weights``: published weights, the default (``pretrained=True``) first.
    """

    block: Block
    layers: Tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64
    weights: Tuple[Weights, ...] = ()
    summary: str = ""


def _mindcv(path: str) -> Weights:
    return Weights("mindcv", MINDCV_URL + path, naming="mindcv", convention="mindcv")


VARIANTS: Dict[str, Variant] = {
    "resnet18": Variant(ResidualBlockBase, (2, 2, 2, 2), weights=(_mindcv("resnet/resnet18-1e65cd21.ckpt"),),
                        summary="ResNet-18 (basic blocks 2-2-2-2)"),
    "resnet34": Variant(ResidualBlockBase, (3, 4, 6, 3), weights=(_mindcv("resnet/resnet34-f297d27e.ckpt"),),
                        summary="ResNet-34 (basic blocks 3-4-6-3)"),
    "resnet50": Variant(ResidualBlock, (3, 4, 6, 3),
                        weights=(Weights("tutorial", TUTORIAL_URL, naming="tutorial", convention="tutorial"),
                                 _mindcv("resnet/resnet50-e0733ab8.ckpt")),
                        summary="ResNet-50 (bottlenecks 3-4-6-3; default weights: the MindSpore tutorial's)"),
    "resnet101": Variant(ResidualBlock, (3, 4, 23, 3), weights=(_mindcv("resnet/resnet101-689c5e77.ckpt"),),
                         summary="ResNet-101 (bottlenecks 3-4-23-3)"),
    "resnet152": Variant(ResidualBlock, (3, 8, 36, 3), weights=(_mindcv("resnet/resnet152-beb689d8.ckpt"),),
                         summary="ResNet-152 (bottlenecks 3-8-36-3)"),
    "resnext50_32x4d": Variant(ResidualBlock, (3, 4, 6, 3), groups=32, width_per_group=4,
                               weights=(_mindcv("resnext/resnext50_32x4d-af8aba16.ckpt"),),
                               summary="ResNeXt-50 32x4d (grouped bottlenecks 3-4-6-3)"),
    "resnext101_32x4d": Variant(ResidualBlock, (3, 4, 23, 3), groups=32, width_per_group=4,
                                weights=(_mindcv("resnext/resnext101_32x4d-3c1e9c51.ckpt"),),
                                summary="ResNeXt-101 32x4d (grouped bottlenecks 3-4-23-3)"),
    "resnext101_64x4d": Variant(ResidualBlock, (3, 4, 23, 3), groups=64, width_per_group=4,
                                weights=(_mindcv("resnext/resnext101_64x4d-8929255b.ckpt"),),
                                summary="ResNeXt-101 64x4d (grouped bottlenecks 3-4-23-3)"),
    "resnext101_32x8d": Variant(ResidualBlock, (3, 4, 23, 3), groups=32, width_per_group=8,
                                weights=(Weights("torchvision", TORCHVISION_URL + "resnext101_32x8d-8ba56ff5.pth",
                                                 naming="torch", convention="torch"),),
                                summary="ResNeXt-101 32x8d (grouped bottlenecks 3-4-23-3; weights: torchvision's "
                                        "IMAGENET1K_V1, a PyTorch file)"),
    "resnext152_64x4d": Variant(ResidualBlock, (3, 8, 36, 3), groups=64, width_per_group=4,
                                weights=(_mindcv("resnext/resnext152_64x4d-3aba275c.ckpt"),),
                                summary="ResNeXt-152 64x4d (grouped bottlenecks 3-8-36-3)"),
}


def list_models() -> List[str]:
    """Names accepted by :func:`~mindresnet.models.create_model`, sorted."""
    return sorted(VARIANTS)


def get_variant(name: str) -> Variant:
    """The table row of ``name``; raises ConfigError listing the known names."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"Unknown model {name!r}. Choose one of: {', '.join(list_models())}.") from None


def get_weights(name: str, tag: Optional[str] = None) -> Weights:
    """The published weights of variant ``name``: its default, or those tagged ``tag``.

    Raises:
        ConfigError: ``name`` has no published weights, or none tagged ``tag``.
    """
    weights = get_variant(name).weights
    if not weights:
        raise ConfigError(f"{name} has no published ImageNet weights. Pass pretrained=<path to a weights file> "
                          "(--pretrained PATH) or train from scratch (--pretrained false).")
    if tag is None:
        return weights[0]
    for entry in weights:
        if entry.tag == tag:
            return entry
    raise ConfigError(f"{name} has no weights tagged {tag!r}; its weights: {', '.join(w.tag for w in weights)}.")
