"""The one loader: a model with the head of its weights, and how to feed it, from any weights.

:func:`load_model` takes published weights (``True`` or a tag), a ``.ckpt``/``.pth``/``.pt``/
``.safetensors`` file or a checkpoint written by mindresnet, works out what to build (the file's
metadata, else the flags, else what the file shows: head rows, stem conv, naming convention),
builds it, loads every tensor strictly and resolves the class names. ``mindresnet.tools.eval_data``
(``--ckpt``), ``--pretrained`` in evaluate/predict/visualize/export, and ``convert`` all call it.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple, Union

from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.data.constants import CLASS_INDICES_FILE
from mindresnet.data.folder import read_class_indices
from mindresnet.data.imagenet import IMAGENET_CLASSES, imagenet_class_names
from mindresnet.errors import CheckpointError
from mindresnet.fileio import PathLike
from mindresnet.models.factory import create_model, no_random_init
from mindresnet.models.pretrained import WeightsSource, load_weights, open_weights
from mindresnet.models.resnet import ResNet


def load_model(weights: Union[bool, str, Path], arch: Optional[str] = None, num_classes: Optional[int] = None,
               stem: Optional[str] = None, convention: Optional[str] = None, image_size: Optional[int] = None,
               class_indices: Optional[PathLike] = None) -> Tuple[ResNet, CheckpointMeta]:
    """Build the network ``weights`` were trained as, with their own head, load them, in inference mode.

    Args:
        weights: ``True`` or a published weights tag of ``arch`` (see
            :func:`~mindresnet.models.pretrained.parse_pretrained`), or a weights file (a ``str``
            that is no tag, or a ``Path``), ideally a checkpoint written by ``mindresnet.train``.
        arch: model name; required for published weights and for a file without metadata, else
            it must agree with the metadata.
        num_classes: head size; default: the metadata's, else the file's head rows; same rule.
        stem: ``imagenet`` or ``cifar``; default: the metadata's, else read off the stem conv.
        convention: padding/BatchNorm convention; default: the metadata's, else the published
            entry's or the one detected from the parameter names; may not contradict metadata.
        image_size: input side used for preprocessing; default: the metadata's (or the published
            entry's), else 32 for the cifar stem, 224 for the imagenet stem.
        class_indices: a ``class_indices.json`` whose names win over the metadata's; without
            it, the metadata's names, else ``class_indices.json`` beside the file, else ImageNet's
            for a 1000/1001-class head, else ``class_<i>``.

    Returns:
        ``(net, meta)``: the resolved metadata, with ``class_names_from`` set.

    Raises:
        CheckpointError: unreadable file, no metadata and no ``arch``, a flag that contradicts the
            metadata, or weights of another architecture, class count or stem (the message names
            the file). ConfigError: unknown tag. DataError: a class index file is unreadable.
        DownloadError: published weights could not be fetched.
    """
    source = open_weights(arch, weights)
    meta = resolve_metadata(source, arch, num_classes, stem, convention, image_size, class_indices)
    with no_random_init():  # every parameter comes from the file
        net = create_model(meta.arch, num_classes=meta.num_classes, stem=meta.stem, convention=meta.convention)
    hint = " from its metadata" if source.meta else " from --arch/--num-classes/--stem"
    try:
        net.load_report = report = load_weights(net, source.path, source.params)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (built {meta.arch}, {meta.num_classes} classes, {meta.stem} stem{hint})"
                              ) from exc
    if report.skipped_head:
        raise CheckpointError(
            f"Checkpoint {source.path} has a classifier head of shape {source.head_shape or 'none'}, but the model "
            f"was built for {meta.num_classes} classes{hint}. Pass the --num-classes the checkpoint was trained "
            "with, or the checkpoint that matches.")
    if report.skipped_stem:
        raise CheckpointError(f"Checkpoint {source.path} has a stem conv for the other stem than {meta.stem!r}; "
                              "pass the --stem it was trained with.")
    net.set_train(False)
    return net, meta


def pretrained_model(arch: str, pretrained: Union[bool, str] = True, convention: Optional[str] = None
                     ) -> Tuple[ResNet, CheckpointMeta]:
    """:func:`load_model` of published weights (``True``, a tag) or a weights file for ``arch``, ``convention``
    overriding the one the weights declare or are detected to have (none may contradict metadata)."""
    return load_model(pretrained, arch=arch, convention=convention)


def resolve_metadata(source: WeightsSource, arch: Optional[str], num_classes: Optional[int], stem: Optional[str],
                     convention: Optional[str], image_size: Optional[int],
                     class_indices: Optional[PathLike]) -> CheckpointMeta:
    """The file's metadata with the flags applied, or metadata built from the flags and what the file shows.

    A flag may fill in what the file lacks, but may not contradict what it stores.
    """
    stored, path = source.meta, source.path
    if stored is not None:
        for key, flag, value in (("arch", "--arch", arch), ("num_classes", "--num-classes", num_classes),
                                 ("stem", "--stem", stem), ("convention", "--convention", convention)):
            if value is not None and getattr(stored, key) != value:
                raise CheckpointError(
                    f"{flag} {value} contradicts checkpoint {path}, which was trained with "
                    f"{key}={getattr(stored, key)!r} (from its metadata). Drop {flag}, or pass a checkpoint "
                    f"trained with {key}={value!r}.")
        meta = stored.replace()
    else:
        num_classes = num_classes or source.num_classes
        if arch is None or num_classes is None:
            raise CheckpointError(
                f"Checkpoint {path} has no mindresnet metadata (it was not written by mindresnet.train), so the "
                "model cannot be rebuilt from it alone: pass --arch (e.g. resnet18) and --num-classes (e.g. 10), "
                "and --stem/--image-size if they differ from the defaults.")
        meta = CheckpointMeta.describe(arch, num_classes, stem or source.stem, convention or source.convention,
                                       image_size)
        if source.weights is not None:
            meta.preprocess = source.weights.preprocess
    if image_size is not None:
        meta.preprocess = meta.preprocess.with_size(image_size)
    meta.class_names, meta.class_names_from = class_names(path, meta, class_indices)
    return meta


def class_names(path: Path, meta: CheckpointMeta, class_indices: Optional[PathLike]) -> Tuple[List[str], Optional[str]]:
    """(class names, where they came from) of the weights at ``path``: ``class_indices``, the metadata's, a
    ``class_indices.json`` beside the file, ImageNet's for a 1000/1001-class head, else ``class_<i>`` and None."""
    beside = path.parent / CLASS_INDICES_FILE
    if class_indices is not None:
        names, origin = read_class_indices(class_indices), f"--class-indices {class_indices}"
    elif meta.class_names:
        names, origin = list(meta.class_names), "metadata"
    elif beside.is_file():
        names, origin = read_class_indices(beside), str(beside)
    elif meta.num_classes in (IMAGENET_CLASSES, IMAGENET_CLASSES + 1):
        return imagenet_class_names(meta.num_classes), "ImageNet"
    else:
        return [f"class_{index}" for index in range(meta.num_classes)], None
    if len(names) != meta.num_classes:
        raise CheckpointError(f"{origin} lists {len(names)} class names but checkpoint {path} has "
                              f"{meta.num_classes} classes. Pass the class index file of its training run.")
    return names, origin
