"""A validation hold-out of a training split: stratified by class and seeded, so every rank of a
sharded run and every resume of a run draw the same images (scikit-learn's
``train_test_split(stratify=labels)``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

PARTS = ("train", "val")


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(kept indices, held-out indices) of ``labels``, each sorted.

    Each class gives ``round(fraction * its count)`` images to the held-out part, at least one and
    never all of them when it has two or more (a class of one image stays in training).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) > 1:
            held.extend(members[:min(max(round(fraction * len(members)), 1), len(members) - 1)])
    held_out = np.sort(np.asarray(held, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


@dataclass(frozen=True)
class Holdout:
    """Which part of a training split a pipeline reads: ``train`` (what remains) or ``val`` (held out)."""

    fraction: float
    seed: int
    part: str

    def __post_init__(self):
        if self.part not in PARTS:
            raise ValueError(f"holdout part must be one of {PARTS}, got {self.part!r}")

    def indices(self, labels: Sequence[int]) -> np.ndarray:
        """Sorted indices of this part among ``labels`` (the whole split's, in reader order)."""
        kept, held_out = stratified_split(labels, self.fraction, self.seed)
        return kept if self.part == "train" else held_out
