"""The one dataset factory: name -> reader, split names, normalisation (timm's ``create_dataset``).

Add a dataset by adding a row to :data:`DATASETS`: its reader (same keyword arguments as
:func:`~mindresnet.data.cifar10.create_dataset_cifar10`), the name of its held-out split, and the
normalisation its images get.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from mindresnet.data.cifar10 import create_dataset_cifar10
from mindresnet.data.constants import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from mindresnet.data.folder import create_dataset_folder
from mindresnet.errors import ConfigError
from mindresnet.fileio import PathLike

SPLITS = ("train", "eval")


@dataclass(frozen=True)
class DatasetKind:
    """How to read one kind of dataset."""

    reader: Callable[..., Any]
    eval_usage: str  # the reader's name for the held-out split
    mean: Sequence[float]
    std: Sequence[float]
    summary: str
    downloadable: bool = False  # the reader takes ``download=`` (train split only)
    discovers_classes: bool = False  # the reader takes ``class_indices_path=`` to record its classes


DATASETS: Dict[str, DatasetKind] = {
    "cifar10": DatasetKind(create_dataset_cifar10, "test", CIFAR10_MEAN, CIFAR10_STD,
                           "CIFAR-10 binary files (data_batch_*.bin, test_batch.bin)", downloadable=True),
    "folder": DatasetKind(create_dataset_folder, "val", IMAGENET_MEAN, IMAGENET_STD,
                          "image folders root/train/<class>/*, root/val/<class>/*", discovers_classes=True),
}


@dataclass
class LoadedDataset:
    """A batched pipeline with what the model needs to know about it."""

    pipeline: Any  # mindspore.dataset.Dataset yielding (image, label) batches
    class_names: List[str]
    mean: Sequence[float]
    std: Sequence[float]


def get_dataset_kind(name: str) -> DatasetKind:
    """The row of ``name`` in :data:`DATASETS`; ConfigError naming ``--dataset`` otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"--dataset {name!r} is not one of {', '.join(DATASETS)}.") from None


def create_dataset(name: str, root: PathLike, split: str, *, image_size: int, batch_size: int,
                   workers: Optional[int] = None, augment: Optional[bool] = None,
                   shuffle: Optional[bool] = None, drop_remainder: Optional[bool] = None,
                   num_shards: Optional[int] = None, shard_id: Optional[int] = None, download: bool = False,
                   class_indices_path: Optional[PathLike] = None,
                   auto_augment: Optional[str] = None) -> LoadedDataset:
    """Build the ``split`` (``train`` or ``eval``) pipeline of dataset ``name`` under ``root``.

    Augmentation, shuffling and dropping the last partial batch default to on for ``train`` only;
    ``auto_augment`` (``randaugment`` or ``autoaugment``) adds to the augmentation.
    ``download`` applies to datasets that can be downloaded (cifar10); ``class_indices_path`` to
    those that discover their classes (folder: the file is written there).

    Raises:
        ConfigError: unknown dataset or split. DataError: missing or malformed files (named).
    """
    kind = get_dataset_kind(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    options: Dict[str, Any] = dict(image_size=image_size, batch_size=batch_size, workers=workers, augment=augment,
                                   shuffle=shuffle, drop_remainder=drop_remainder, num_shards=num_shards,
                                   shard_id=shard_id, auto_augment=auto_augment)
    if kind.downloadable:
        options["download"] = download and split == "train"
    if kind.discovers_classes:
        options["class_indices_path"] = class_indices_path
    pipeline, names = kind.reader(root, "train" if split == "train" else kind.eval_usage, **options)
    return LoadedDataset(pipeline, list(names), tuple(kind.mean), tuple(kind.std))
