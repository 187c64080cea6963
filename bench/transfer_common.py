"""Data split, recipes, scores and reporting shared by bench/transfer.py and its PyTorch twin (numpy only).

It imports neither mindresnet nor MindSpore, so the PyTorch process keeps its own oneDNN ISA.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import cifar_numpy
from cifar_numpy import cifar_bin_files, read_cifar_bin
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

# ``--target imbalanced``: classes 5-9 with these training images (the first ones of each class).
IMBALANCED_COUNTS = (100, 50, 25, 12, 6)
# Its recipes: the two-stage recipe above, plain or with one of the two imbalance remedies.
# class_weights: inverse-frequency loss weights (scikit-learn's "balanced") in head and full epochs.
# sampler: class-balanced draws (uniform class, then an image, with replacement; as many draws as
#   images) in the head and the full epochs, as mindresnet.train does.
# lr_find: the full epochs' --lr is mindresnet-lr-find's suggestion (mindresnet side only).
_TWO_STAGE = dict(RECIPES["two-stage"])
IMBALANCED_RECIPES: Dict[str, Dict] = {
    "plain": dict(_TWO_STAGE),
    "class-weighted": dict(_TWO_STAGE, class_weights=True),
    "balanced-sampler": dict(_TWO_STAGE, sampler=True),
    "class-weighted-lr-find": dict(_TWO_STAGE, class_weights=True, lr_find=True),
}
ALL_RECIPES: Dict[str, Dict] = {**RECIPES, **IMBALANCED_RECIPES}
TARGETS = ("balanced", "imbalanced")


def recipes_for(target: str, twin: bool = False) -> List[str]:
    """Recipe names of a ``--target`` (``twin``: without the mindresnet-only ``lr_find`` ones)."""
    names = list(RECIPES) if target == "balanced" else list(IMBALANCED_RECIPES)
    return [name for name in names if not (twin and ALL_RECIPES[name].get("lr_find"))]


def split(folder: Path, per_class: int, counts: Optional[Sequence[int]] = None) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``source`` and ``source_test`` (classes 0-4), ``target`` (the first ``per_class`` train images of
    each of classes 5-9, or the first ``counts[i]`` of the i-th) and ``target_test`` (all the test split's
    images of classes 5-9, labels renumbered 0-4)."""
    train_x, train_y = read_cifar_bin(cifar_bin_files(folder, "data_batch_*.bin"))
    test_x, test_y = read_cifar_bin(cifar_bin_files(folder, "test_batch.bin"))
    source = np.isin(train_y, SOURCE_CLASSES)
    counts = counts or [per_class] * len(TARGET_CLASSES)
    picked = np.concatenate([np.flatnonzero(train_y == c)[:n] for c, n in zip(TARGET_CLASSES, counts)])
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
    return in_batches(rng.permutation(count), drop_last)


def in_batches(order: np.ndarray, drop_last: bool = True) -> List[np.ndarray]:
    """``order`` (row indices of an epoch, e.g. a balanced sampler's) cut into batches of :data:`BATCH`."""
    order = np.asarray(order)
    stop = len(order) - len(order) % BATCH if drop_last else len(order)
    return [order[i:i + BATCH] for i in range(0, stop, BATCH)]


def sampler_seed(seed: int, epoch: int) -> int:
    """The seed of a balanced sampler's draw in ``epoch`` of a run of ``seed`` (both sides)."""
    return 1000 * seed + epoch


def balanced_class_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weights ``images / (classes x images of c)``, float32, for the twin
    (bench/transfer.py checks that ``mindresnet.data.balance`` gives the same)."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weights, present = np.ones(classes), counts > 0  # a class without images: weight 1
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def scores(predicted: np.ndarray, labels: np.ndarray, classes: int) -> Dict[str, float]:
    """Top-1 accuracy and macro-F1 (unweighted mean of the per-class F1; scikit-learn's conventions)."""
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    correct, predicted_n, support = np.diag(confusion), confusion.sum(0), confusion.sum(1)
    precision = np.divide(correct, predicted_n, out=np.zeros(classes), where=predicted_n > 0)
    recall = np.divide(correct, support, out=np.zeros(classes), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(classes), where=precision + recall > 0)
    return {"accuracy": float(correct.sum() / confusion.sum()), "macro_f1": float(f1[support > 0].mean()),
            "recall": [round(float(r), 3) for r in recall]}


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


def result_line(side: str, recipe: str, seed: int, accuracy: float, seconds: float, epochs: str,
                macro_f1: Optional[float] = None, recall: Optional[List[float]] = None, lr: Optional[float] = None) -> str:
    """One machine-readable result (``RESULT {json}``) for the combined table."""
    return "RESULT " + json.dumps({"side": side, "recipe": recipe, "seed": seed, "accuracy": accuracy,
                                   "macro_f1": macro_f1, "recall": recall, "lr": lr, "seconds": seconds,
                                   "epochs": epochs})


def table(results: List[Dict]) -> str:
    """Markdown table: recipe x side, mean macro-F1, accuracy and seconds over the seeds (per-seed values after)."""
    lines = ["| recipe | side | macro-F1 (mean) | per seed | top-1 (mean) | per seed | train s (mean) | epochs |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["recipe"], r["side"]) for r in results}, key=lambda k: (list(ALL_RECIPES).index(k[0]), k[1]))
    for recipe, side in keys:
        rows = [r for r in results if r["recipe"] == recipe and r["side"] == side]
        f1s, accs, secs = ([r.get("macro_f1") or 0.0 for r in rows], [r["accuracy"] for r in rows],
                           [r["seconds"] for r in rows])
        lines.append(f"| {recipe} | {side} | {np.mean(f1s):.3f} | {', '.join(f'{f:.3f}' for f in f1s)} | "
                     f"{np.mean(accs):.3f} | {', '.join(f'{a:.3f}' for a in accs)} | "
                     f"{np.mean(secs):.1f} | {rows[0]['epochs']} |")
    return "\n".join(lines)
