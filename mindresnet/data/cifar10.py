"""CIFAR-10, binary version: find or download the files, validate them, build the pipeline.

Two readers produce the same columns (``image`` HWC uint8, ``label`` uint32) from the same files,
in the same order, before the same transforms:

* ``mindspore.dataset.Cifar10Dataset`` when every file of the split holds the official 10000
  records (the only count it can read);
* a numpy reader (``NumpySlicesDataset`` over the records in memory) for any other whole number
  of records, such as the subset in ``shared/data/cifar10-subset``.

Every file is checked before the pipeline is built (size, label bytes, class file), so a bad
download fails at creation with a :class:`DataError` naming the file, never mid-epoch.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import List, Optional, Tuple, Union

import numpy as np
from mindspore import dataset as ds

from mindresnet import hub
from mindresnet.errors import DataError
from mindresnet.data.constants import (CIFAR10_ARCHIVE, CIFAR10_CLASSES, CIFAR10_FOLDER, CIFAR10_SIZE, CIFAR10_URL,
                                       CLASS_FILE, RECORD_BYTES, STANDARD_RECORDS, TEST_FILE, TRAIN_PATTERN)
from mindresnet.data.balance import BalancedSampler
from mindresnet.data.holdout import Holdout
from mindresnet.data.preprocess import Preprocess, cifar10_preprocess
from mindresnet.data.transforms import cifar10_transforms, map_and_batch, resolve_workers

logger = logging.getLogger("mindresnet.data")

USAGES = ("train", "test")
COLUMNS = ["image", "label"]


def create_dataset_cifar10(
    data_dir: Union[str, Path],
    usage: str = "train",
    image_size: int = 32,
    batch_size: int = 256,
    augment: Optional[bool] = None,
    workers: Optional[int] = None,
    shuffle: Optional[bool] = None,
    num_shards: Optional[int] = None,
    shard_id: Optional[int] = None,
    drop_remainder: Optional[bool] = None,
    download: bool = False,
    auto_augment: Optional[str] = None,
    color_jitter: float = 0.0,
    reprob: float = 0.0,
    sampler: Optional[str] = None,
    preprocess: Optional[Preprocess] = None,
    holdout: Optional[Holdout] = None,
) -> Tuple[ds.Dataset, List[str]]:
    """Batched CIFAR-10 pipeline (the tutorial's transforms) and the class names.

    Args:
        data_dir: the folder holding the ``.bin`` files, or its parent holding ``cifar-10-batches-bin/``.
        usage: ``"train"`` (data_batch_*.bin) or ``"test"`` (test_batch.bin).
        image_size: output side; images are resized when it is not 32.
        batch_size: images per batch.
        augment: RandomCrop(32, pad 4) + horizontal flip (else ``preprocess.ops()``); default True for train only.
        workers: parallel workers per stage; default and maximum: the cores this process may use.
        shuffle: default True for train only.
        num_shards: number of data-parallel ranks (with ``shard_id``).
        shard_id: this rank.
        drop_remainder: drop the last incomplete batch; default True for train only.
        download: when no CIFAR-10 files are found, download the official archive and extract
            it to ``<data_dir>/cifar-10-batches-bin`` (``data_dir`` itself when it is named so).
            The archive is cached as ``hub.cache_dir()/datasets/cifar-10-binary.tar.gz``
            (``$MINDRESNET_HOME``), so other data folders extract it without downloading again.
        auto_augment: with ``augment``, also ``randaugment`` or ``autoaugment`` (the CIFAR-10
            policy): :func:`~mindresnet.data.transforms.auto_augment_ops`.
        color_jitter, reprob: with ``augment``, colour jitter and random erasing
            (:func:`~mindresnet.data.transforms.cifar10_transforms`).
        sampler: ``balanced`` instead of the shuffle: :class:`~mindresnet.data.balance.BalancedSampler`.
        preprocess: output size, eval transform and normalisation; default
            :func:`~mindresnet.data.preprocess.cifar10_preprocess` at ``image_size``.
        holdout: read only this part of the split (a validation hold-out or what remains of it).

    Returns:
        ``(dataset, class_names)``: columns ``image`` (float32, N x 3 x size x size, normalised)
        and ``label`` (int32); class names from ``batches.meta.txt``.

    Raises:
        DataError: missing folder or files, truncated file, bad label byte, bad class file.
        hub.DownloadError: the download failed (names the URL and where to put the files).
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
    preprocess = preprocess or cifar10_preprocess(int(image_size))

    folder = locate_cifar10(data_dir, download=download)
    class_names = read_class_names(folder)
    files = split_files(folder, usage)
    sizes = [record_count(path) for path in files]
    standard = holdout is None and all(count == STANDARD_RECORDS for count in sizes)
    if standard:
        labels = file_labels(files)  # reading them checks them: Cifar10Dataset would fail mid-epoch instead
    else:
        images, labels = load_arrays(files)
        if holdout is not None:
            keep = holdout.indices(labels)
            images, labels = images[keep], labels[keep]
    order = (dict(sampler=BalancedSampler(labels, num_shards, shard_id)) if sampler
             else dict(shuffle=shuffle, num_shards=num_shards, shard_id=shard_id))
    if standard:
        source = ds.Cifar10Dataset(str(folder), usage=usage, num_parallel_workers=workers, **order)
        reader = "Cifar10Dataset"
    else:
        source = ds.NumpySlicesDataset((images, labels), column_names=COLUMNS, **order)
        reader = ("numpy reader" + (f" ({holdout.part} part of a {holdout.fraction:g} hold-out, seed {holdout.seed})"
                                    if holdout else " (files are not the standard 10000 records)"))
    logger.info("CIFAR-10 %s: %d of %d records in %d file(s) of %s, read with %s", usage, len(labels), sum(sizes),
                len(files), folder, reader)
    dataset = map_and_batch(source, cifar10_transforms(augment, preprocess, auto_augment, color_jitter, reprob),
                            batch_size, drop_remainder, workers)
    return dataset, class_names


def locate_cifar10(data_dir: Union[str, Path], download: bool = False) -> Path:
    """The folder holding the CIFAR-10 binary files: ``data_dir`` or ``data_dir/cifar-10-batches-bin``.

    Args:
        data_dir: either folder.
        download: fetch and extract the archive when neither holds CIFAR-10 files.

    Raises:
        DataError: nothing found and ``download`` is False.
    """
    data_dir = Path(data_dir).expanduser()
    for candidate in (data_dir, data_dir / CIFAR10_FOLDER):
        if _holds_cifar10(candidate):
            return candidate
    if download:
        return download_cifar10(data_dir.parent if data_dir.name == CIFAR10_FOLDER else data_dir)
    where = ("does not exist" if not data_dir.exists()
             else f"holds no CIFAR-10 binary files (nor does {CIFAR10_FOLDER}/)")
    raise DataError(
        f"CIFAR-10 folder {data_dir} {where}. Pass download=True (--download) to fetch {CIFAR10_URL}, "
        f"or put data_batch_1.bin ... data_batch_5.bin, test_batch.bin and {CLASS_FILE} in {data_dir}."
    )


def split_files(folder: Path, usage: str, hint: Optional[str] = None) -> List[Path]:
    """The ``.bin`` files of a split, sorted as ``Cifar10Dataset`` reads them.

    Args:
        folder: the CIFAR-10 binary folder.
        usage: ``"train"`` or ``"test"``.
        hint: the fix the error suggests; default: delete the folder and re-download.

    Raises:
        DataError: the split has no file.
    """
    files = sorted(folder.glob(TRAIN_PATTERN)) if usage == "train" else [folder / TEST_FILE]
    files = [path for path in files if path.is_file()]
    if not files:
        wanted = TRAIN_PATTERN if usage == "train" else TEST_FILE
        raise DataError(f"{folder} has no {wanted} for usage={usage!r}. {hint or _redo_hint(folder)}")
    return files


def read_class_names(folder: Path, hint: Optional[str] = None) -> List[str]:
    """The 10 class names in ``batches.meta.txt``, one a line.

    Args:
        folder: the CIFAR-10 binary folder.
        hint: the fix the error suggests; default: delete the folder and re-download.

    Raises:
        DataError: the file is missing, empty or does not hold 10 names.
    """
    path = folder / CLASS_FILE
    if not path.is_file():
        raise DataError(f"Class file {path} is missing. {hint or _redo_hint(folder)}")
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    names = [name for name in names if name]
    if len(names) != CIFAR10_CLASSES:
        state = "is empty" if not names else f"holds {len(names)} class names, not {CIFAR10_CLASSES}"
        raise DataError(f"Class file {path} {state}. {hint or _redo_hint(folder)}")
    return names


def record_count(path: Path, hint: Optional[str] = None) -> int:
    """Number of 3073-byte records in ``path``; ``hint`` as in :func:`split_files`.

    Raises:
        DataError: the size is zero or not a whole number of records (truncated download).
    """
    size = path.stat().st_size
    if size == 0 or size % RECORD_BYTES:
        raise DataError(
            f"{path} has {size} bytes, not a whole number of {RECORD_BYTES}-byte CIFAR-10 records: the file is "
            f"truncated or not the binary version. {hint or _redo_hint(path.parent)}"
        )
    return size // RECORD_BYTES


def read_records(path: Path, hint: Optional[str] = None) -> np.ndarray:
    """All records of ``path`` as a (records, 3073) uint8 array, label bytes checked.

    ``hint`` as in :func:`split_files`.

    Raises:
        DataError: bad size, or a label byte outside 0-9.
    """
    count = record_count(path, hint)
    raw = np.fromfile(path, dtype=np.uint8).reshape(count, RECORD_BYTES)
    bad = np.flatnonzero(raw[:, 0] >= CIFAR10_CLASSES)
    if bad.size:
        raise DataError(
            f"{path}: record {bad[0]} has label byte {raw[bad[0], 0]}, outside 0-{CIFAR10_CLASSES - 1} "
            f"({bad.size} such records): the file is corrupt or not CIFAR-10. {hint or _redo_hint(path.parent)}"
        )
    return raw


def file_labels(files: List[Path]) -> np.ndarray:
    """Labels (N,) uint8 of the records of ``files``, in reader order (label bytes checked)."""
    return np.concatenate([read_records(path)[:, 0] for path in files])


def split_labels(data_dir: Union[str, Path], usage: str = "train") -> np.ndarray:
    """Labels of split ``usage`` of the CIFAR-10 folder ``data_dir`` (or its parent), in reader order."""
    return file_labels(split_files(locate_cifar10(data_dir), usage))


def load_arrays(files: List[Path]) -> Tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 RGB and labels (N,) uint32 of ``files``, as ``Cifar10Dataset`` yields them."""
    raw = np.concatenate([read_records(path) for path in files])
    images = raw[:, 1:].reshape(-1, 3, CIFAR10_SIZE, CIFAR10_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), raw[:, 0].astype(np.uint32)


def download_cifar10(root: Path) -> Path:
    """Download (or take from the cache) the official archive and extract it to ``root/cifar-10-batches-bin``.

    The archive is kept at ``hub.cache_dir()/datasets/cifar-10-binary.tar.gz``. Extraction goes
    into a temporary folder beside the target, is checked, then renamed into place, so a
    half-extracted folder never takes the target's name.

    A failed download or extraction removes the folders this call created (they are empty then).

    Raises:
        hub.DownloadError: naming the URL, the archive path and the folder for the files.
        DataError: the archive is unsafe or does not hold valid CIFAR-10 files.
    """
    root = Path(root)
    created = [folder for folder in (root, *root.parents) if not folder.exists()]  # deepest first
    target = root / CIFAR10_FOLDER
    try:
        with hub.file_lock(target):
            if _holds_cifar10(target):  # another process extracted it while we waited
                return target
            archive = hub.cache_dir() / "datasets" / CIFAR10_ARCHIVE
            try:
                hub.fetch(CIFAR10_URL, archive, verify=_check_archive)
            except hub.DownloadError as exc:
                raise hub.DownloadError(
                    f"{exc} Or extract the official archive ({CIFAR10_URL}) yourself so that data_batch_1.bin ... "
                    f"test_batch.bin and {CLASS_FILE} lie in {target}."
                ) from exc
            logger.info("extracting %s to %s", archive, target)
            extract_cifar10(archive, target)
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):  # not empty: another process is filling it
                folder.rmdir()
        raise
    return target


def extract_cifar10(archive: Path, target: Path) -> None:
    """Safely extract ``archive`` and move its ``cifar-10-batches-bin/`` to ``target`` once checked.

    Raises:
        DataError: a member is unsafe (absolute path, ``..``), the folder is missing or invalid,
            or ``target`` exists with other content.
    """
    workdir = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        _safe_extract(archive, workdir)
        extracted = workdir / CIFAR10_FOLDER
        hint = f"{archive} is not a valid CIFAR-10 binary archive: delete it and retry."
        if not extracted.is_dir():
            raise DataError(f"{archive} has no {CIFAR10_FOLDER}/ folder. {hint}")
        read_class_names(extracted, hint)
        for usage in USAGES:
            for path in split_files(extracted, usage, hint):
                read_records(path, hint)
        if target.exists():
            try:
                target.rmdir()  # an empty leftover folder; a non-empty one is not ours to delete
            except OSError as exc:
                raise DataError(f"{target} exists and holds files that are not CIFAR-10. Move it away "
                                f"and retry.") from exc
        os.rename(extracted, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _safe_extract(archive: Path, dest: Path) -> None:
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if member.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise DataError(f"{archive} holds the unsafe member {member.name!r} (absolute path or '..'); "
                                f"it is not the official CIFAR-10 archive. Delete {archive} and retry.")
            if not (member.isfile() or member.isdir()):
                logger.warning("skipping %s in %s: not a regular file or folder", member.name, archive)
                continue
            tar.extract(member, dest, set_attrs=False, **extra)


def _check_archive(path: Path) -> None:
    with tarfile.open(path, "r:gz") as tar:
        if tar.next() is None:
            raise ValueError("the archive is empty")


def _holds_cifar10(folder: Path) -> bool:
    return folder.is_dir() and (any(folder.glob(TRAIN_PATTERN)) or (folder / TEST_FILE).exists()
                                or (folder / CLASS_FILE).exists())


def _redo_hint(folder: Path) -> str:
    return (f"Delete {folder} and run again with download=True (--download), or replace it with the "
            f"files of the official archive {CIFAR10_URL}.")
