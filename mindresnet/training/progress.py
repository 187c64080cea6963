"""The epoch in progress: its data order, its steps, their loss and time, and the divergence check.

Resuming at a step needs the same batches in the same order: :func:`epoch_batches` seeds the
data pipeline from (seed, epoch) before each epoch, so every epoch has its own shuffle and
augmentation, identical in every process, and drops the batches already trained on. They are
run through the pipeline and discarded rather than skipped at the source, because the random
augmentations draw from one stream per pipeline: skipping rows before them would change the
crops and flips of every later image.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from mindresnet.errors import TrainingDiverged


def epoch_seed(seed: int, epoch: int) -> int:
    """The data pipeline's seed for ``epoch`` of a run seeded ``seed`` (a 32-bit integer)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def epoch_batches(dataset, seed: int, epoch: int, skip: int = 0) -> Iterator:
    """Tuples of ``dataset`` for ``epoch``, the same in every process, without its first ``skip`` batches.

    Args:
        dataset: a MindSpore dataset built once for the run.
        seed: the run's seed.
        epoch: 0-based epoch; sets the shuffle and the augmentations.
        skip: batches already trained on (a resumed epoch).
    """
    from mindspore import dataset as ds

    ds.config.set_seed(epoch_seed(seed, epoch))
    batches = dataset.create_tuple_iterator(num_epochs=1)
    for _ in range(skip):
        next(batches)
    return batches


@dataclass
class EpochProgress:
    """The epoch in progress: steps trained, their summed loss and seconds (stored in ``-last.ckpt``)."""

    step: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0

    def count_step(self, loss: float, epoch: int, epoch_start: float, remedy: str, context: str = "") -> None:
        """Add a finished step's ``loss``; the epoch's seconds become those since ``epoch_start`` (``perf_counter``).

        Raises:
            TrainingDiverged: ``loss`` is NaN or infinite; the message says where (``context`` after
                the step number) and what to do (``remedy``).
        """
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at epoch {epoch + 1}, step {self.step + 1}{context}: "
                                   f"training diverged. {remedy}; the best checkpoint so far is untouched.")
        self.step += 1
        self.loss_sum += loss
        self.seconds = time.perf_counter() - epoch_start
