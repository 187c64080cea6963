"""Rebuild a trained model from its checkpoint, and its held-out data.

Training stores a :class:`~mindresnet.checkpoint_meta.CheckpointMeta` in the checkpoint, so
:func:`load_trained_model` needs only the file. Checkpoints from elsewhere carry none: then
``arch`` (``--arch``) is required, and ``num_classes`` (``--num-classes``) where the file's head
does not say it. Loading itself is :func:`mindresnet.models.load_model`'s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.data.factory import create_dataset
from mindresnet.errors import DataError
from mindresnet.fileio import PathLike
from mindresnet.models import ResNet, load_model


def load_trained_model(ckpt: PathLike, arch: Optional[str] = None, num_classes: Optional[int] = None,
                       stem: Optional[str] = None, convention: Optional[str] = None,
                       image_size: Optional[int] = None, class_indices: Optional[PathLike] = None
                       ) -> Tuple[ResNet, CheckpointMeta]:
    """:func:`~mindresnet.models.load_model` of the checkpoint file ``ckpt`` (``--ckpt``): the network it was
    trained as, its weights loaded, in inference mode, and its resolved metadata (arguments as there)."""
    return load_model(Path(ckpt), arch=arch, num_classes=num_classes, stem=stem, convention=convention,
                      image_size=image_size, class_indices=class_indices)


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
