"""Data split, recipes and reporting shared by bench/transfer.py and its PyTorch twin (numpy only).

It imports neither mindresnet nor MindSpore, so the PyTorch process keeps its own oneDNN ISA.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

import cifar_numpy
from cifar_numpy import read_cifar_bin
from cifar_numpy import augment  # noqa: F401  (re-exported: both sides augment alike)
SOURCE_CLASSES = (0, 1, 2, 3, 4)  # airplane, automobile, bird, cat, deer: pretraining
TARGET_CLASSES = (5, 6, 7, 8, 9)  # dog, frog, horse, ship, truck: transfer
MEAN = np.array((0.4914, 0.4822, 0.4465), np.float32)
STD = np.array((0.2470, 0.2435, 0.2616), np.float32)
BATCH = 32

# Every full-network recipe: SGD with Nesterov momentum 0.9, weight decay 5e-4 (not on BatchNorm or
# biases), batch 32, crop + flip, cosine from lr to lr/100 over the epochs that fit the budget.
# Head phases train on features computed once (eval-mode BatchNorm, no augmentation).
RECIPES: Dict[str, Dict] = {
    "scratch": dict(init="random", lr=0.05),
    "linear-probe": dict(init="pretrained", head_epochs=60, head_lr=0.05, full=False),
    "fine-tune": dict(init="pretrained", lr=0.01),
    "two-stage": dict(init="pretrained", head_epochs=10, head_lr=0.05, lr=0.01, layer_decay=0.7),
}
WEIGHT_DECAY, MOMENTUM = 5e-4, 0.9


def split(folder: Path, per_class: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``source`` and ``source_test`` (classes 0-4), ``target`` (the first ``per_class`` train images of
    each of classes 5-9) and ``target_test`` (the test split's classes 5-9, labels renumbered 0-4)."""
    train_x, train_y = read_cifar_bin(sorted(Path(folder).glob("data_batch_*.bin")))
    test_x, test_y = read_cifar_bin([Path(folder) / "test_batch.bin"])
    source = np.isin(train_y, SOURCE_CLASSES)
    picked = np.concatenate([np.flatnonzero(train_y == c)[:per_class] for c in TARGET_CLASSES])
    test = np.isin(test_y, TARGET_CLASSES)
    source_test = np.isin(test_y, SOURCE_CLASSES)
    return {"source": (train_x[source], train_y[source]), "source_test": (test_x[source_test], test_y[source_test]),
            "target": (train_x[picked], train_y[picked] - TARGET_CLASSES[0]),
            "target_test": (test_x[test], test_y[test] - TARGET_CLASSES[0])}


def normalise(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 -> normalised (N, 3, 32, 32) float32."""
    return cifar_numpy.normalise(images, MEAN, STD)


def batches(count: int, rng: np.random.Generator, drop_last: bool = True) -> List[np.ndarray]:
    """Shuffled index batches of :data:`BATCH` (the last incomplete one dropped unless asked)."""
    order = rng.permutation(count)
    stop = count - count % BATCH if drop_last else count
    return [order[i:i + BATCH] for i in range(0, stop, BATCH)]


def cosine(lr: float, steps: int) -> List[float]:
    """Cosine from ``lr`` to ``lr / 100`` over ``steps`` steps."""
    low = lr / 100
    return [low + 0.5 * (lr - low) * (1 + math.cos(math.pi * s / max(1, steps))) for s in range(steps)]


def layer_scale(name: str, decay: float) -> float:
    """timm's layer decay for a ResNet: head 1, layer4 decay, ... stem decay**5."""
    if name.startswith("fc."):
        return 1.0
    for stage in (4, 3, 2, 1):
        if name.startswith(f"layer{stage}."):
            return decay ** (5 - stage)
    return decay ** 5


def epochs_in(budget: float, epoch_seconds: float) -> int:
    """Whole epochs of ``epoch_seconds`` that fit in ``budget`` (at least 1)."""
    return max(1, int(budget / max(epoch_seconds, 1e-6)))


def result_line(side: str, recipe: str, seed: int, accuracy: float, seconds: float, epochs: str) -> str:
    """One machine-readable result (``RESULT {json}``) for the combined table."""
    return "RESULT " + json.dumps({"side": side, "recipe": recipe, "seed": seed, "accuracy": accuracy,
                                   "seconds": seconds, "epochs": epochs})


def table(results: List[Dict]) -> str:
    """Markdown table: recipe x side, mean accuracy and seconds over the seeds (per-seed values after)."""
    lines = ["| recipe | side | top-1 (mean) | per seed | train s (mean) | epochs |",
             "|---|---|---|---|---|---|"]
    keys = sorted({(r["recipe"], r["side"]) for r in results}, key=lambda k: (list(RECIPES).index(k[0]), k[1]))
    for recipe, side in keys:
        rows = [r for r in results if r["recipe"] == recipe and r["side"] == side]
        accs, secs = [r["accuracy"] for r in rows], [r["seconds"] for r in rows]
        lines.append(f"| {recipe} | {side} | {np.mean(accs):.3f} | {', '.join(f'{a:.3f}' for a in accs)} | "
                     f"{np.mean(secs):.1f} | {rows[0]['epochs']} |")
    return "\n".join(lines)
