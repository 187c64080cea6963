"""Building models: :func:`create_model`, the thin per-variant builders, and :func:`pretrained_model`.

The network is built in the convention its weights were trained in (see
:mod:`mindresnet.models.conventions`), so loaded weights compute what their publisher's network did.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import mindspore as ms

from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.kernels import use_cpu_kernels
from mindresnet.data.imagenet import IMAGENET_CLASSES, imagenet_class_names
from mindresnet.models.conventions import DEFAULT_CONVENTION, get_convention
from mindresnet.models.pretrained import load_weights, open_weights
from mindresnet.models.registry import VARIANTS, get_variant
from mindresnet.models.resnet import ResNet

Pretrained = Union[bool, str]


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
            initialisation. A head of another size than the file's stays freshly initialised.
        stem: ``"imagenet"`` or ``"cifar"`` (see :class:`ResNet`).
        freeze_backbone: make every parameter but the ``fc`` head non-trainable.
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
    source = open_weights(name, pretrained) if pretrained else None
    if convention is None:
        convention = source.convention if source is not None else DEFAULT_CONVENTION
    net = _build(name, num_classes, stem, convention, **kwargs)
    if source is not None:
        net.load_report = load_weights(net, source.path, source.params, allow_partial)
    if freeze_backbone:
        freeze(net)
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


def pretrained_model(arch: str, pretrained: Pretrained = True, convention: Optional[str] = None
                     ) -> Tuple[ResNet, CheckpointMeta]:
    """The network of ``pretrained`` weights with its own head, in inference mode, and how to feed it.

    Args:
        arch: a name from :func:`~mindresnet.models.list_models`.
        pretrained: ``True``, a published weights tag, or a weights file (as in :func:`create_model`).
        convention: overrides the convention the weights declare or are detected to have.

    Returns:
        ``(net, meta)``, ``meta`` a :class:`~mindresnet.checkpoint_meta.CheckpointMeta` (as
        :func:`mindresnet.trained.load_trained_model` returns) with ``arch``, ``num_classes``,
        ``stem``, ``convention``, ``preprocess`` (the published entry's, else
        the file's metadata, else ImageNet's at 224) and ``class_names``: the file's metadata names
        (``class_names_from="metadata"``), else ImageNet names for a 1000- or 1001-class head
        (``"ImageNet"``), else ``class_<i>`` (None).
    """
    source = open_weights(arch, pretrained)
    stored, weights = source.meta, source.weights
    num_classes = source.num_classes or (stored.num_classes if stored else IMAGENET_CLASSES)
    stem = stored.stem if stored else source.stem
    net = _build(arch, num_classes, stem, convention or source.convention)
    net.load_report = load_weights(net, source.path, source.params)
    net.set_train(False)
    if stored and stored.class_names:
        class_names, names_from = list(stored.class_names), "metadata"
    elif num_classes in (IMAGENET_CLASSES, IMAGENET_CLASSES + 1):
        class_names, names_from = imagenet_class_names(num_classes), "ImageNet"
    else:
        class_names, names_from = [f"class_{i}" for i in range(num_classes)], None
    preprocess = (weights or stored or CheckpointMeta(arch, num_classes)).preprocess
    meta = CheckpointMeta(arch, num_classes, stem=stem, convention=net.convention, preprocess=preprocess,
                          class_names=class_names, class_names_from=names_from)
    return net, meta


def freeze(net: ResNet) -> None:
    """Mark every parameter except the ``fc`` head as not trainable."""
    for param in net.get_parameters():
        param.requires_grad = param.name.startswith("fc.")


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
