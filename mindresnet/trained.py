"""Rebuild a trained model from its checkpoint, and its held-out data.

Training stores a :class:`~mindresnet.checkpoint_meta.CheckpointMeta` in the checkpoint, so
:func:`load_trained_model` needs only the file. Checkpoints from elsewhere carry none: then
``arch`` and ``num_classes`` (``--arch``/``--num-classes``) are required.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import mindspore as ms

from mindresnet.checkpoint import read_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.data import read_class_indices
from mindresnet.data.constants import CLASS_INDICES_FILE
from mindresnet.data.factory import create_dataset
from mindresnet.errors import CheckpointError, DataError
from mindresnet.fileio import PathLike
from mindresnet.data.imagenet import IMAGENET_CLASSES, imagenet_class_names
from mindresnet.models import ResNet, create_model
from mindresnet.models.naming import detect_naming, naming_convention
from mindresnet.models.pretrained import STEM_CONV, load_weights

# Parameters built inside it stay uninitialised until loaded (MindSpore 2.10; deprecated there).
_no_random_init = getattr(ms.nn.utils, "no_init_parameters", contextlib.nullcontext)

HEAD_WEIGHT = "fc.weight"


def load_trained_model(ckpt: PathLike, arch: Optional[str] = None, num_classes: Optional[int] = None,
                       stem: Optional[str] = None, convention: Optional[str] = None,
                       image_size: Optional[int] = None, class_indices: Optional[PathLike] = None
                       ) -> Tuple[ResNet, CheckpointMeta]:
    """Build the network a checkpoint was trained as and load its weights, in inference mode.

    Args:
        ckpt: a ``.ckpt`` file, ideally written by ``mindresnet.train``.
        arch: model name; required when the checkpoint has no metadata, else must agree with it.
        num_classes: head size; same rule as ``arch``.
        stem: ``imagenet`` or ``cifar``; default: the metadata's, else read off the stem conv.
        convention: padding/BatchNorm convention; default: the metadata's, else detected from the
            parameter names (:func:`mindresnet.models.naming.naming_convention`); same rule as ``arch``.
        image_size: input side used for preprocessing; default: the metadata's (else 32 for the
            cifar stem, 224 for the imagenet stem).
        class_indices: a ``class_indices.json`` whose names win over the metadata's; without
            it, the metadata's names, else ``class_indices.json`` beside the checkpoint.

    Returns:
        ``(net, meta)``: the resolved metadata, with ``class_names_from`` set.

    Raises:
        CheckpointError: unreadable file, no metadata and no ``arch``/``num_classes``, a flag that
            contradicts the metadata, or weights of another architecture or class count (the
            message names the file).
        DataError: a class index file is unreadable.
    """
    path = Path(ckpt)
    params, stored = read_checkpoint(path)
    meta = resolve_metadata(path, params, stored, arch, num_classes, stem, convention, image_size, class_indices)
    with _no_random_init():  # every parameter comes from the file: skip the He init (0.6 s, ResNet-50)
        net = create_model(meta.arch, num_classes=meta.num_classes, stem=meta.stem, convention=meta.convention)
    hint = " from its metadata" if stored else " from --arch/--num-classes/--stem"
    try:
        report = load_weights(net, path, params)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (built {meta.arch}, {meta.num_classes} classes, {meta.stem} stem{hint})"
                              ) from exc
    if report.skipped_head:
        found = tuple(params[HEAD_WEIGHT].shape) if HEAD_WEIGHT in params else "none"
        raise CheckpointError(
            f"Checkpoint {path} has a classifier head of shape {found}, but the model was built for "
            f"{meta.num_classes} classes{hint}. Pass the --num-classes the checkpoint was "
            "trained with, or the checkpoint that matches.")
    if report.skipped_stem:
        raise CheckpointError(f"Checkpoint {path} has a stem conv for the other stem than {meta.stem!r}; "
                              "pass the --stem it was trained with.")
    net.set_train(False)
    return net, meta


def resolve_metadata(path: Path, params: Dict[str, Any], stored: Optional[CheckpointMeta], arch: Optional[str],
                     num_classes: Optional[int], stem: Optional[str], convention: Optional[str],
                     image_size: Optional[int], class_indices: Optional[PathLike]) -> CheckpointMeta:
    """The file's metadata with the flags applied, or metadata built from the flags for a foreign file.

    A flag may fill in what the file lacks, but may not contradict what it stores.
    """
    if stored is None and (arch is None or num_classes is None):
        raise CheckpointError(
            f"Checkpoint {path} has no mindresnet metadata (it was not written by mindresnet.train), so the "
            "model cannot be rebuilt from it alone: pass --arch (e.g. resnet18) and --num-classes (e.g. 10), "
            "and --stem/--image-size if they differ from the defaults.")
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
        if stem is None:
            conv = params.get(STEM_CONV)
            stem = "cifar" if conv is not None and conv.shape[-1] == 3 else "imagenet"
        meta = CheckpointMeta.describe(arch, num_classes, stem,
                                       convention or naming_convention(detect_naming(params), params), image_size)
    if image_size is not None:
        meta.preprocess = meta.preprocess.with_size(image_size)
    meta.class_names, meta.class_names_from = _class_names(path, meta, class_indices)
    return meta


def _class_names(path: Path, meta: CheckpointMeta, class_indices: Optional[PathLike]
                 ) -> Tuple[List[str], Optional[str]]:
    """(class names, where they came from): ImageNet's for a 1000/1001-class head without names of its own,
    else generic ``class_<i>`` names and None."""
    beside = path.parent / CLASS_INDICES_FILE
    if class_indices is not None:
        names, source = read_class_indices(class_indices), f"--class-indices {class_indices}"
    elif meta.class_names:
        names, source = list(meta.class_names), "metadata"
    elif beside.is_file():
        names, source = read_class_indices(beside), str(beside)
    elif meta.num_classes in (IMAGENET_CLASSES, IMAGENET_CLASSES + 1):
        return imagenet_class_names(meta.num_classes), "ImageNet"
    else:
        return [f"class_{index}" for index in range(meta.num_classes)], None
    if len(names) != meta.num_classes:
        raise CheckpointError(f"{source} lists {len(names)} class names but checkpoint {path} has "
                              f"{meta.num_classes} classes. Pass the class index file of its training run.")
    return names, source


def build_eval_dataset(meta: CheckpointMeta, data_dir: PathLike, batch_size: int,
                       workers: Optional[int] = None, dataset: Optional[str] = None):
    """The held-out split the checkpoint's metadata points at, in file order (no shuffle, no augmentation),
    preprocessed by the checkpoint's :class:`~mindresnet.data.preprocess.Preprocess`.

    Args:
        meta: from :func:`load_trained_model`.
        data_dir: CIFAR-10 folder, or image-folder root holding ``val/``.
        batch_size: images per batch.
        workers: pipeline workers (default: the cores).
        dataset: a name of :data:`mindresnet.data.factory.DATASETS`; default: the metadata's, else ``cifar10``.

    Returns:
        ``(dataset, class_names)``.

    Raises:
        DataError: missing or malformed data; classes that differ from the checkpoint's.
    """
    loaded = create_dataset(dataset or meta.dataset or "cifar10", data_dir, "eval", preprocess=meta.preprocess,
                            batch_size=batch_size, workers=workers)
    names = loaded.class_names
    if len(names) != meta.num_classes:
        raise DataError(f"{data_dir} has {len(names)} classes, the checkpoint {meta.num_classes}. "
                        "Pass the data the checkpoint was trained on.")
    if meta.class_names_from and names != list(meta.class_names):
        raise DataError(
            f"{data_dir} has classes {', '.join(names)}, but the checkpoint's ({meta.class_names_from}) are "
            f"{', '.join(meta.class_names)}. Pass the data the checkpoint was trained on.")
    return loaded.pipeline, names
