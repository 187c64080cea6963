"""Building models: :func:`create_model` and the thin per-variant builders.

The network is built in the convention its weights were trained in (see
:mod:`mindresnet.models.conventions`), so loaded weights compute what their publisher's network did.
A model with the head of its weights, and its metadata, comes from :mod:`mindresnet.models.loader`.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import mindspore as ms

from mindresnet.kernels import use_cpu_kernels
from mindresnet.models.conventions import DEFAULT_CONVENTION, get_convention
from mindresnet.models.pretrained import Pretrained, load_weights, open_weights, parse_pretrained
from mindresnet.models.registry import VARIANTS, get_variant
from mindresnet.models.resnet import ResNet

# Parameters built inside it get no values until loaded or ``init_parameters_data()`` (MindSpore 2.10,
# deprecated there): the He initialisation a weights file overwrites is 60% of building ResNet-50.
no_random_init = getattr(ms.nn.utils, "no_init_parameters", contextlib.nullcontext)


def create_model(name: str, num_classes: int = 1000, pretrained: Pretrained = False, stem: str = "imagenet",
                 freeze_backbone: bool = False, convention: Optional[str] = None, allow_partial: bool = False,
                 **kwargs) -> ResNet:
    """Build a registered model.

    Args:
        name: a name from :func:`~mindresnet.models.list_models`.
        num_classes: classes of the ``fc`` head.
        pretrained: ``True`` downloads (once) and loads the variant's default published ImageNet
            weights; a tag of its published weights (e.g. ``"mindcv"``) picks others; a path loads
            that ``.ckpt``, ``.pth``, ``.pt`` or ``.safetensors`` file; ``False`` keeps the random
            initialisation; the words of ``--pretrained`` (``"true"``, ``"false"``) work too
            (:func:`~mindresnet.models.pretrained.parse_pretrained`). A head of another size than
            the file's stays freshly initialised.
        stem: ``"imagenet"`` or ``"cifar"`` (see :class:`ResNet`).
        freeze_backbone: train only the classifier, the backbone's BatchNorm in inference mode
            (:meth:`ResNet.freeze_backbone`).
        convention: padding/BatchNorm convention (``"mindcv"``, ``"tutorial"``, ``"models"``,
            ``"torch"``). Default: the one the weights were trained in (the published entry's, the
            file's metadata, or detected from its parameter names), ``"mindcv"`` without weights.
        allow_partial: ignore tensors of ``pretrained`` that the network does not have, instead of
            refusing the file (see :func:`~mindresnet.models.pretrained.load_weights`).
        **kwargs: passed to :class:`ResNet` (e.g. ``in_channels``).

    Returns:
        The network; ``net.arch`` and ``net.convention`` name what was built, and when weights
        were loaded, ``net.load_report`` says what was loaded.
    """
    pretrained = parse_pretrained(pretrained, name)
    source = open_weights(name, pretrained) if pretrained else None
    if convention is None:
        convention = source.convention if source is not None else DEFAULT_CONVENTION
    with no_random_init() if source is not None else contextlib.nullcontext():
        net = _build(name, num_classes, stem, convention, **kwargs)
    if source is not None:
        net.load_report = load_weights(net, source.path, source.params, allow_partial)
        net.init_parameters_data()  # what the file did not fill (a new head, a cifar stem) gets its own init
    if freeze_backbone:
        net.freeze_backbone()
    return net


def _build(name: str, num_classes: int, stem: str, convention: str, **kwargs) -> ResNet:
    variant = get_variant(name)
    net = ResNet(variant.block, variant.layers, num_classes=num_classes, stem=stem, groups=variant.groups,
                 width_per_group=variant.width_per_group, convention=get_convention(convention), **kwargs)
    net.arch = name
    net.load_report = None
    if ms.get_context("device_target") == "CPU":
        use_cpu_kernels(net)
    return net


def _builder(name: str):
    """A thin builder ``name(num_classes=1000, pretrained=False, stem="imagenet", **kw)``."""
    def build(num_classes: int = 1000, pretrained: Pretrained = False, stem: str = "imagenet",
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
resnext101_32x4d = _builder("resnext101_32x4d")
resnext101_64x4d = _builder("resnext101_64x4d")
resnext101_32x8d = _builder("resnext101_32x8d")
resnext152_64x4d = _builder("resnext152_64x4d")
