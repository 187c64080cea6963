"""The one table of model variants, the registry over it, and the builders.

Add a variant by adding a row to :data:`VARIANTS` and, if it should be importable as a
function, a ``_builder`` line at the bottom.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from mindresnet.models.blocks import Block, ResidualBlock, ResidualBlockBase
from mindresnet.models.resnet import ResNet

TUTORIAL_URL = ("https://mindspore-website.obs.cn-north-4.myhuaweicloud.com/notebook/models/"
                "application/resnet50_224_new.ckpt")
MINDCV_URL = "https://download.mindspore.cn/toolkits/mindcv/"


@dataclass(frozen=True)
class Weights:
    """Published ImageNet weights of a variant."""

    url: str
    naming: str  # "tutorial", "mindcv" or "models": how the file names its parameters
    num_classes: int = 1000
    sha256: Optional[str] = None  # checked when known
    top1: Optional[float] = None  # ImageNet top-1 reported by the publisher


@dataclass(frozen=True)
class Variant:
    """Architecture of one model: block type, blocks per stage, ResNeXt grouping, weights."""

    block: Block
    layers: Tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64
    weights: Optional[Weights] = None
    summary: str = ""


VARIANTS: Dict[str, Variant] = {
    "resnet18": Variant(ResidualBlockBase, (2, 2, 2, 2),
                        weights=Weights(MINDCV_URL + "resnet/resnet18-1e65cd21.ckpt", "mindcv", top1=70.21),
                        summary="ResNet-18 (basic blocks 2-2-2-2)"),
    "resnet34": Variant(ResidualBlockBase, (3, 4, 6, 3),
                        weights=Weights(MINDCV_URL + "resnet/resnet34-f297d27e.ckpt", "mindcv", top1=74.15),
                        summary="ResNet-34 (basic blocks 3-4-6-3)"),
    "resnet50": Variant(ResidualBlock, (3, 4, 6, 3), weights=Weights(TUTORIAL_URL, "tutorial"),
                        summary="ResNet-50 (bottlenecks 3-4-6-3; weights: the MindSpore tutorial's)"),
    "resnet101": Variant(ResidualBlock, (3, 4, 23, 3),
                         weights=Weights(MINDCV_URL + "resnet/resnet101-689c5e77.ckpt", "mindcv"),
                         summary="ResNet-101 (bottlenecks 3-4-23-3)"),
    "resnet152": Variant(ResidualBlock, (3, 8, 36, 3),
                         weights=Weights(MINDCV_URL + "resnet/resnet152-beb689d8.ckpt", "mindcv"),
                         summary="ResNet-152 (bottlenecks 3-8-36-3)"),
    "resnext50_32x4d": Variant(ResidualBlock, (3, 4, 6, 3), groups=32, width_per_group=4,
                               weights=Weights(MINDCV_URL + "resnext/resnext50_32x4d-af8aba16.ckpt", "mindcv"),
                               summary="ResNeXt-50 32x4d (grouped bottlenecks 3-4-6-3)"),
    "resnext101_32x8d": Variant(ResidualBlock, (3, 4, 23, 3), groups=32, width_per_group=8,
                                summary="ResNeXt-101 32x8d (grouped bottlenecks 3-4-23-3; no official "
                                        "MindSpore weights)"),
}


def list_models() -> List[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(VARIANTS)


def get_variant(name: str) -> Variant:
    """The table row of ``name``; raises ValueError listing the known names."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}. Choose one of: {', '.join(list_models())}.") from None


def create_model(name: str, num_classes: int = 1000, pretrained: Union[bool, str] = False,
                 stem: str = "imagenet", freeze_backbone: bool = False, **kwargs) -> ResNet:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: classes of the ``fc`` head.
        pretrained: ``True`` downloads (once) and loads the variant's ImageNet weights;
            a path loads that ``.ckpt``; ``False`` keeps the random initialisation.
            A head of another size than the checkpoint's stays freshly initialised.
        stem: ``"imagenet"`` or ``"cifar"`` (see :class:`ResNet`).
        freeze_backbone: make every parameter but the ``fc`` head non-trainable.
        **kwargs: passed to :class:`ResNet` (e.g. ``in_channels``).

    Returns:
        The network; when weights were loaded, ``net.load_report`` says what was loaded.
    """
    variant = get_variant(name)
    net = ResNet(variant.block, variant.layers, num_classes=num_classes, stem=stem,
                 groups=variant.groups, width_per_group=variant.width_per_group, **kwargs)
    net.arch = name
    net.load_report = None
    if pretrained:
        from mindresnet.models.pretrained import load_pretrained

        net.load_report = load_pretrained(net, name, pretrained)
    if freeze_backbone:
        freeze(net)
    return net


def freeze(net: ResNet) -> None:
    """Mark every parameter except the ``fc`` head as not trainable."""
    for param in net.get_parameters():
        param.requires_grad = param.name.startswith("fc.")


def _builder(name: str):
    """A thin builder ``name(num_classes=1000, pretrained=False, stem="imagenet", **kw)``."""
    def build(num_classes: int = 1000, pretrained: Union[bool, str] = False, stem: str = "imagenet",
              **kwargs) -> ResNet:
        return create_model(name, num_classes, pretrained, stem, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{VARIANTS[name].summary}. Arguments as in :func:`create_model`."
    return build


resnet18 = _builder("resnet18")
resnet34 = _builder("resnet34")
resnet50 = _builder("resnet50")
resnet101 = _builder("resnet101")
resnet152 = _builder("resnet152")
resnext50_32x4d = _builder("resnext50_32x4d")
resnext101_32x8d = _builder("resnext101_32x8d")
