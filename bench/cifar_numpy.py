"""CIFAR-10 binary files as numpy arrays, and the tutorial's augmentation, for the PyTorch twins.

numpy only, so a twin that must not import mindresnet (or MindSpore's oneDNN cap) can use it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

import numpy as np

RECORD = 1 + 32 * 32 * 3  # one label byte, then the R, G and B planes


def cifar_bin_files(folder: Path, pattern: str) -> List[Path]:
    """The ``pattern`` files of a CIFAR-10 binary folder (or of its ``cifar-10-batches-bin``), sorted.

    Exits with a message naming the folder when there are none.
    """
    folder = Path(folder)
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    files = sorted(folder.glob(pattern))
    if not files:
        raise SystemExit(f"error: no CIFAR-10 binary files {pattern} in --data-dir {folder}: pass the folder "
                         "that holds data_batch_*.bin and test_batch.bin (or its parent)")
    return files


def read_cifar_bin(files: Iterable[Path]) -> Tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and (N,) int64 labels of CIFAR-10 binary files."""
    raw = np.concatenate([np.fromfile(f, np.uint8).reshape(-1, RECORD) for f in files])
    return raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), raw[:, 0].astype(np.int64)


def write_cifar_bin(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write (N, 32, 32, 3) uint8 ``images`` and their labels (0-255) as one CIFAR-10 binary file."""
    planes = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    records = np.concatenate([np.asarray(labels).astype(np.uint8)[:, None], planes], axis=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    records.tofile(path)
    return Path(path)


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(N, 32, 32, 3) uint8 -> (N, 3, 32, 32) float32, scaled to [0, 1] then standardised per channel."""
    x = (images.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RandomCrop(32, padding=4) and RandomHorizontalFlip(0.5) per image."""
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(rng.integers(0, 9, size=(len(images), 2))):
        crop = padded[i, dy:dy + 32, dx:dx + 32]
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out
