"""Custom image-folder datasets: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``.

Class indices are the sorted class folder names of the train split, saved as
``class_indices.json`` ({"0": "cat", ...}) for prediction. Every file is checked with PIL when the
dataset is created: a file that is not a decodable image is skipped with a warning naming it,
and a split, class or folder left without images, or a train split of one class, is a :class:`DataError`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from mindspore import dataset as ds
from mindspore.dataset import vision
from PIL import Image

from mindresnet.errors import DataError
from mindresnet.data.balance import BalancedSampler
from mindresnet.data.constants import DECODABLE_FORMATS, IMAGE_EXTENSIONS
from mindresnet.data.holdout import Holdout
from mindresnet.data.preprocess import Preprocess, imagenet_preprocess
from mindresnet.data.transforms import folder_transforms, map_and_batch, resolve_workers
from mindresnet.fileio import write_text

logger = logging.getLogger("mindresnet.data")

USAGES = ("train", "val")


def create_dataset_folder(
    root: Union[str, Path],
    usage: str = "train",
    image_size: int = 224,
    batch_size: int = 32,
    augment: Optional[bool] = None,
    workers: Optional[int] = None,
    shuffle: Optional[bool] = None,
    num_shards: Optional[int] = None,
    shard_id: Optional[int] = None,
    drop_remainder: Optional[bool] = None,
    class_indices_path: Optional[Union[str, Path]] = None,
    auto_augment: Optional[str] = None,
    color_jitter: float = 0.0,
    reprob: float = 0.0,
    sampler: Optional[str] = None,
    preprocess: Optional[Preprocess] = None,
    holdout: Optional[Holdout] = None,
) -> Tuple[ds.Dataset, List[str]]:
    """Batched pipeline over ``root/<usage>/<class>/<image>`` with ImageNet normalisation.

    Args:
        root: dataset folder holding ``train/`` and ``val/``.
        usage: ``"train"`` or ``"val"``.
        image_size: output side.
        batch_size: images per batch.
        augment: RandomResizedCrop + horizontal flip (else ``preprocess.ops()``); default True for train only.
        workers: parallel workers per stage; default and maximum: the cores this process may use.
        shuffle: default True for train only.
        num_shards: number of data-parallel ranks (with ``shard_id``).
        shard_id: this rank.
        drop_remainder: drop the last incomplete batch; default True for train only.
        class_indices_path: where to write ``class_indices.json`` (atomically); not written when None.
        auto_augment: with ``augment``, also ``randaugment`` or ``autoaugment`` (the ImageNet
            policy): :func:`~mindresnet.data.transforms.auto_augment_ops`.
        color_jitter, reprob: with ``augment``, colour jitter and random erasing
            (:func:`~mindresnet.data.transforms.folder_transforms`).
        sampler: ``balanced`` instead of the shuffle: :class:`~mindresnet.data.balance.BalancedSampler`.
        preprocess: output size, eval transform and normalisation; default
            :func:`~mindresnet.data.preprocess.imagenet_preprocess` at ``image_size``.
        holdout: read only this part of the split (a validation hold-out or what remains of it).

    Returns:
        ``(dataset, class_names)``: columns ``image`` (float32, N x 3 x size x size) and ``label``
        (int32, index into ``class_names``, the sorted train class folders).

    Raises:
        DataError: missing folder, fewer than two classes, an empty class, a val class unknown to train.
    """
    if usage not in USAGES:
        raise ValueError(f"usage must be one of {USAGES}, got {usage!r}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    train = usage == "train"
    augment = train if augment is None else augment
    shuffle = train if shuffle is None else shuffle
    drop_remainder = train if drop_remainder is None else drop_remainder
    workers = resolve_workers(workers)
    preprocess = preprocess or imagenet_preprocess(int(image_size))

    root = Path(root).expanduser()
    class_names = list_classes(root / "train")
    if len(class_names) < 2:
        raise DataError(f"Image folder {root / 'train'} has one class folder ({class_names[0]}): a classifier needs "
                        f"at least two, or it learns nothing and scores 100%. Add a folder per class under "
                        f"{root / 'train'}.")
    paths, labels = scan_split(root / usage, class_names)
    if holdout is not None:
        keep = holdout.indices(labels)
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    if class_indices_path is not None:
        write_class_indices(class_indices_path, class_names)
    logger.info("image folder %s: %d images in %d classes%s", root / usage, len(paths), len(class_names),
                f" ({holdout.part} part of a {holdout.fraction:g} hold-out, seed {holdout.seed})" if holdout else "")
    order = (dict(sampler=BalancedSampler(labels, num_shards, shard_id)) if sampler
             else dict(shuffle=shuffle, num_shards=num_shards, shard_id=shard_id))
    source = ds.GeneratorDataset(_FileSource(paths, labels), column_names=["image", "label"],
                                 python_multiprocessing=False, **order)
    ops = [vision.Decode()] + folder_transforms(augment, preprocess, auto_augment, color_jitter, reprob)
    dataset = map_and_batch(source, ops, batch_size, drop_remainder, workers, cast_label=False)
    return dataset, class_names


def split_labels(root: Union[str, Path], usage: str = "train") -> np.ndarray:
    """Labels of split ``usage`` of the image folder ``root``, in reader order (unreadable files skipped)."""
    root = Path(root).expanduser()
    return np.asarray(scan_split(root / usage, list_classes(root / "train"))[1], np.int64)


def list_classes(split_dir: Path) -> List[str]:
    """Sorted class folder names of a split (hidden folders ignored).

    Raises:
        DataError: the folder is missing or has no class folders.
    """
    if not split_dir.is_dir():
        raise DataError(f"Image folder {split_dir} does not exist. Expected <root>/train/<class>/*.jpg and "
                        f"<root>/val/<class>/*.jpg.")
    names = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise DataError(f"Image folder {split_dir} has no class folders. Put each class's images in "
                        f"{split_dir}/<class name>/.")
    return names


def scan_split(split_dir: Path, class_names: Sequence[str]) -> Tuple[List[str], List[int]]:
    """Image paths and labels of a split; files that are not decodable images are skipped with a warning.

    Args:
        split_dir: ``root/train`` or ``root/val``.
        class_names: the train classes, in index order.

    Raises:
        DataError: the split is missing, has a class unknown to train, or a class without images.
    """
    present = list_classes(split_dir)
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise DataError(f"{split_dir} has class folders that train does not have: {', '.join(unknown)}. "
                        f"Add them to {split_dir.parent / 'train'} or remove them.")
    missing = [name for name in class_names if name not in present]
    if missing:
        logger.warning("%s has no folder for classes %s", split_dir, ", ".join(missing))
    paths: List[str] = []
    labels: List[int] = []
    for index, name in enumerate(class_names):
        if name not in present:
            continue
        class_dir = split_dir / name
        images = [path for path in sorted(class_dir.rglob("*")) if path.is_file() and _is_image(path)]
        if not images:
            raise DataError(f"Class folder {class_dir} holds no readable image ({', '.join(IMAGE_EXTENSIONS)}). "
                            f"Add images or delete the folder.")
        paths += [str(path) for path in images]
        labels += [index] * len(images)
    return paths, labels


def write_class_indices(path: Union[str, Path], class_names: Sequence[str]) -> Path:
    """Write ``{"0": name, ...}`` to ``path`` atomically (temp file + rename); returns the path."""
    text = json.dumps({str(i): name for i, name in enumerate(class_names)}, indent=2, ensure_ascii=False)
    return write_text(path, text + "\n")


def read_class_indices(path: Union[str, Path]) -> List[str]:
    """Class names in index order from a ``class_indices.json`` written by :func:`write_class_indices`.

    Raises:
        DataError: the file is missing, not JSON, or its keys are not 0..n-1.
    """
    path = Path(path)
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"Class index file {path} does not exist. It is written when training on an image "
                        f"folder; pass the one saved beside the checkpoint.") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"Class index file {path} is not valid JSON ({exc}). Delete it and train again, "
                        f"or write {{\"0\": \"<class>\", ...}} by hand.") from exc
    if not isinstance(mapping, dict) or not mapping or set(mapping) != {str(i) for i in range(len(mapping))}:
        raise DataError(f"Class index file {path} must map \"0\" ... \"n-1\" to class names, got keys "
                        f"{list(mapping)[:10] if isinstance(mapping, dict) else type(mapping).__name__}.")
    return [str(mapping[str(i)]) for i in range(len(mapping))]


def _is_image(path: Path) -> bool:
    if path.name.startswith("."):
        return False  # .DS_Store and the like
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        logger.warning("skipping %s: not an image file (%s)", path, ", ".join(IMAGE_EXTENSIONS))
        return False
    try:
        with Image.open(path) as image:
            image_format = image.format
            image.verify()
    except Exception as exc:  # PIL raises many types for broken files
        logger.warning("skipping %s: not a readable image (%s)", path, exc)
        return False
    if image_format not in DECODABLE_FORMATS:
        logger.warning("skipping %s: %s images cannot be decoded by the pipeline", path, image_format)
        return False
    return True


class _FileSource:
    """Random-access source of (encoded bytes, int32 label); MindSpore decodes in C++."""

    def __init__(self, paths: List[str], labels: List[int]):
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        return np.fromfile(self.paths[index], dtype=np.uint8), self.labels[index]
