"""The one dataset factory: name -> reader, split names, preprocessing (timm's ``create_dataset``).

Add a dataset by adding a row to :data:`DATASETS`: its reader (same keyword arguments as
:func:`~mindresnet.data.cifar10.create_dataset_cifar10`), the name of its held-out split, and the
:class:`~mindresnet.data.preprocess.Preprocess` its images get.

Splits: ``train``; ``val``, a stratified seeded hold-out of the training images
(:mod:`mindresnet.data.holdout`, ``val_split`` > 0; ``train`` is then what remains); ``eval``, the
dataset's own held-out split (CIFAR-10's test batch, a folder's ``val/``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from mindresnet.data import cifar10, folder
from mindresnet.data.cifar10 import create_dataset_cifar10
from mindresnet.data.folder import create_dataset_folder
from mindresnet.data.holdout import Holdout
from mindresnet.data.preprocess import Preprocess, cifar10_preprocess, imagenet_preprocess
from mindresnet.errors import ConfigError, DataError
from mindresnet.fileio import PathLike

SPLITS = ("train", "val", "eval")
DEFAULT_VAL_SPLIT = 0.1  # held out of the training images when a dataset has no held-out split of its own


@dataclass(frozen=True)
class DatasetKind:
    """How to read one kind of dataset."""

    reader: Callable[..., Any]
    eval_usage: str  # the reader's name for the held-out split
    preprocess: Callable[[int], Preprocess]  # image size -> the eval transform and normalisation
    summary: str
    downloadable: bool = False  # the reader takes ``download=`` (train split only)
    discovers_classes: bool = False  # the reader takes ``class_indices_path=`` to record its classes
    labels: Optional[Callable[..., Any]] = None  # (root, reader's split name) -> labels in reader order
    has_eval_split: Callable[[PathLike], bool] = lambda root: True  # whether ``root`` holds the held-out split


DATASETS: Dict[str, DatasetKind] = {
    "cifar10": DatasetKind(create_dataset_cifar10, "test", cifar10_preprocess,
                           "CIFAR-10 binary files (data_batch_*.bin, test_batch.bin)", downloadable=True,
                           labels=cifar10.split_labels),
    "folder": DatasetKind(create_dataset_folder, "val", imagenet_preprocess,
                          "image folders root/train/<class>/*, root/val/<class>/*", discovers_classes=True,
                          labels=folder.split_labels,
                          has_eval_split=lambda root: (Path(root).expanduser() / "val").is_dir()),
}


@dataclass
class LoadedDataset:
    """A batched pipeline with what the model needs to know about it."""

    pipeline: Any  # mindspore.dataset.Dataset yielding (image, label) batches
    class_names: List[str]
    preprocess: Preprocess


def get_dataset_kind(name: str) -> DatasetKind:
    """The row of ``name`` in :data:`DATASETS`; ConfigError naming ``--dataset`` otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"--dataset {name!r} is not one of {', '.join(DATASETS)}.") from None


def default_val_split(name: str, root: PathLike) -> float:
    """The ``val_split`` a run on ``root`` gets unless told: 0 (the dataset's held-out split picks the best
    checkpoint, as the tutorial does for CIFAR-10), or :data:`DEFAULT_VAL_SPLIT` when ``root`` has no such split."""
    return 0.0 if get_dataset_kind(name).has_eval_split(root) else DEFAULT_VAL_SPLIT


def create_dataset(name: str, root: PathLike, split: str, *, batch_size: int, image_size: Optional[int] = None,
                   preprocess: Optional[Preprocess] = None, val_split: float = 0.0, seed: int = 0,
                   workers: Optional[int] = None, augment: Optional[bool] = None,
                   shuffle: Optional[bool] = None, drop_remainder: Optional[bool] = None,
                   num_shards: Optional[int] = None, shard_id: Optional[int] = None, download: bool = False,
                   class_indices_path: Optional[PathLike] = None, auto_augment: Optional[str] = None,
                   color_jitter: float = 0.0, reprob: float = 0.0, sampler: Optional[str] = None) -> LoadedDataset:
    """Build the ``split`` (``train``, ``val`` or ``eval``) pipeline of dataset ``name`` under ``root``.

    ``preprocess`` (default: the dataset's own at ``image_size``) gives the output size, the eval
    transform and the normalisation. With ``val_split`` > 0, ``train`` and ``val`` are the two parts
    of the training images split by :func:`~mindresnet.data.holdout.stratified_split` with ``seed``.
    Augmentation, shuffling and dropping the last partial batch default to on for ``train`` only;
    ``auto_augment`` (``randaugment`` or ``autoaugment``), ``color_jitter`` and ``reprob`` (random
    erasing) add to the augmentation; ``sampler="balanced"`` replaces the shuffle with class-balanced draws.
    ``download`` applies to datasets that can be downloaded (cifar10); ``class_indices_path`` to
    those that discover their classes (folder: the file is written there).

    Raises:
        ConfigError: unknown dataset or split. DataError: missing or malformed files (named).
    """
    kind = get_dataset_kind(name)
    if Path(root).exists() and not Path(root).is_dir():
        raise DataError(f"--data-dir {root} is a file, not a folder. Pass the dataset's folder.")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "val" and not val_split:
        raise ValueError("split 'val' is a hold-out of the training images: pass val_split > 0")
    if preprocess is None:
        if image_size is None:
            raise ValueError("pass image_size or preprocess")
        preprocess = kind.preprocess(int(image_size))
    if split == "val":
        augment, shuffle, drop_remainder = bool(augment), bool(shuffle), bool(drop_remainder)
    holdout = Holdout(val_split, seed, split) if val_split and split != "eval" else None
    options: Dict[str, Any] = dict(image_size=preprocess.size, batch_size=batch_size, workers=workers,
                                   augment=augment, preprocess=preprocess, holdout=holdout,
                                   shuffle=shuffle, drop_remainder=drop_remainder, num_shards=num_shards,
                                   shard_id=shard_id, auto_augment=auto_augment, color_jitter=color_jitter,
                                   reprob=reprob, sampler=sampler)
    if kind.downloadable:
        options["download"] = download and split == "train"
    if kind.discovers_classes:
        options["class_indices_path"] = class_indices_path
    pipeline, names = kind.reader(root, kind.eval_usage if split == "eval" else "train", **options)
    return LoadedDataset(pipeline, list(names), preprocess)


def split_labels(name: str, root: PathLike, split: str = "train") -> np.ndarray:
    """The label of every image of the ``split`` of dataset ``name`` under ``root`` (e.g. for class weights)."""
    kind = get_dataset_kind(name)
    return np.asarray(kind.labels(root, "train" if split == "train" else kind.eval_usage), np.int64)
