"""Stopping a training run on a signal, and resuming it at the very step where it stopped.

A scheduler or a cloud preempts a job with SIGTERM (then SIGKILL after a grace period); a user
presses Ctrl-C (SIGINT). While :class:`StopSignals` is active, either signal asks the run to stop
at the next step boundary (:meth:`StopSignals.check` raises :class:`Preempted` there), so the
state saved is the state after a whole number of steps. Work that can be thrown away, such as
evaluation, runs inside :meth:`StopSignals.abortable` and is cut short at once.

Resuming at a step needs the same batches in the same order: :func:`epoch_batches` seeds the
data pipeline from (seed, epoch) before each epoch, so every epoch has its own shuffle and
augmentation, identical in every process, and drops the batches already trained on. They are
run through the pipeline and discarded rather than skipped at the source, because the random
augmentations draw from one stream per pipeline: skipping rows before them would change the
crops and flips of every later image.

In a data-parallel run only rank 0 saves. The other ranks keep stepping after a signal, so that
rank 0 can finish its step (every step waits for all ranks); once rank 0 has saved and exited,
the launcher (msrun, ``scripts/run_distribute_train.sh``) ends them. Should nothing end them,
they exit on their own after :data:`PEER_GRACE_S` seconds.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from mindresnet.errors import CheckpointError, TrainingDiverged
from mindresnet.fileio import backup_path

logger = logging.getLogger("mindresnet.preemption")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PEER_GRACE_S = 60.0


class Preempted(KeyboardInterrupt):
    """Training stopped on a signal; :attr:`exit_code` is the shell's ``128 + signal`` (130, 143)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Context manager: while active, SIGINT and SIGTERM ask the run to stop cleanly.

    Args:
        leader: this process saves the run (rank 0, or a run of one process). A process that is
            not the leader never stops at a step boundary (its peers would wait for it forever);
            it exits with the signal's code ``peer_grace_s`` seconds after the first signal,
            unless the launcher has ended it before.
        peer_grace_s: see ``leader``.

    Outside the main thread (where Python cannot install handlers) it does nothing, and Ctrl-C
    stays a plain KeyboardInterrupt.
    """

    def __init__(self, leader: bool = True, peer_grace_s: float = PEER_GRACE_S):
        self.leader = leader
        self.peer_grace_s = peer_grace_s
        self.signum: Optional[int] = None
        self._abortable = False
        self._previous = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """A signal has arrived."""
        return self.signum is not None

    def check(self) -> None:
        """Raise :class:`Preempted` if a signal has asked this (leader) process to stop."""
        if self.leader and self.signum is not None:
            raise Preempted(self.signum)

    @contextlib.contextmanager
    def abortable(self) -> Iterator[None]:
        """Run the block so that a signal (or one already pending) raises :class:`Preempted` at once."""
        self.check()
        self._abortable = True
        try:
            yield
        finally:
            self._abortable = False

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            logger.warning("%s received again: already stopping, the checkpoint is being saved", name)
            return
        self.signum = signum
        if not self.leader:
            logger.warning("%s received: rank 0 saves the run; this rank exits when the launcher ends it "
                           "or in %.0f s", name, self.peer_grace_s)
            timer = threading.Timer(self.peer_grace_s, os._exit, (128 + signum,))
            timer.daemon = True
            timer.start()
            return
        if self._abortable:
            logger.warning("%s received: stopping now", name)
            raise Preempted(signum)
        logger.warning("%s received: stopping after the current step", name)


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


def read_resume_checkpoint(last_path: Path):
    """``read_checkpoint`` of ``last_path``, or of its backup when ``last_path`` is unreadable.

    An unreadable ``last_path`` is renamed ``<name>.unreadable``, so that the next save keeps the
    valid backup as its backup.

    Returns:
        (parameters, metadata, the path read).

    Raises:
        CheckpointError: neither file is readable; the message names both and what to do.
    """
    from mindresnet.checkpoint import read_checkpoint

    last_path = Path(last_path)
    backup = backup_path(last_path)
    if not last_path.exists() and not backup.exists():
        raise CheckpointError(f"--resume: {last_path} does not exist. Train without --resume first, "
                              "or point --ckpt-dir at the folder of the run to continue.")
    try:
        return (*read_checkpoint(last_path), last_path)
    except CheckpointError as exc:
        if not backup.exists():
            raise CheckpointError(f"--resume: {exc} There is no backup ({backup.name}) to fall back on: "
                                  f"restore {last_path} from a copy, or start a new run with another "
                                  "--ckpt-dir.") from exc
        try:
            params, meta = read_checkpoint(backup)
        except CheckpointError as backup_exc:
            raise CheckpointError(f"--resume: {exc} Its backup is unreadable too: {backup_exc} Restore "
                                  f"{last_path} from a copy, or start a new run with another --ckpt-dir.") from exc
        if last_path.exists():  # kept for inspection, out of the way of the next save's backup
            os.replace(last_path, last_path.with_name(last_path.name + ".unreadable"))
        logger.warning("--resume: %s; resuming from the backup %s (the save before it); the unreadable "
                       "file is kept as %s.unreadable", exc, backup, last_path.name)
        return params, meta, backup
