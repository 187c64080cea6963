"""The run log: ``train.log`` in a run's folder, and progress lines where no progress bar can be drawn.

:func:`run_log` copies every log record that reaches the root logger (what the console shows, with
the console's format) into ``<ckpt-dir>/train.log`` while a run trains; the progress bar, drawn on
a terminal, is not in it. :class:`ProgressLines` logs one line every ``--log-interval`` steps when
stderr is not a terminal, in place of the bar's redraws every 30 s.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator, Optional

from mindresnet.fileio import write_error

LOG_FILE = "train.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"  # mindresnet.train's console format

logger = logging.getLogger("mindresnet.training.run_log")


@contextlib.contextmanager
def run_log(folder: Path, enabled: bool = True, append: bool = False) -> Iterator[None]:
    """While the block runs, write the log records that reach the root logger into ``folder/train.log``.

    Args:
        enabled: False on the ranks that do not write the run (all but rank 0).
        append: continue the file (a resumed run) instead of starting it anew.

    Raises:
        WriteError: the file cannot be opened.
    """
    if not enabled:
        yield
        return
    path = Path(folder) / LOG_FILE
    try:
        handler = logging.FileHandler(path, mode="a" if append else "w", encoding="utf-8")
    except OSError as exc:
        raise write_error(path, exc) from exc
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        _drop_if_empty(path, append)


def _drop_if_empty(path: Path, append: bool) -> None:
    """A run that stopped before its first record (a bad input) leaves no new file behind."""
    try:
        if not append and path.stat().st_size == 0:
            path.unlink()
    except OSError:
        pass


def lines_replace_bar(interval: Optional[int]) -> bool:
    """Whether ``--log-interval`` lines stand in for the progress bar: set, and stderr is not a terminal."""
    return bool(interval) and not sys.stderr.isatty()


class ProgressLines:
    """A log line every ``interval`` steps of an epoch (``--log-interval``), when :func:`lines_replace_bar`.

    Args:
        interval: steps between lines; None: no lines.
        epochs: epochs of the run (for ``epoch e/E``).
    """

    def __init__(self, interval: Optional[int], epochs: int):
        self.interval = interval if lines_replace_bar(interval) else None
        self.epochs = epochs

    def step(self, epoch: int, steps: int, progress, loss: float) -> None:
        """After a step of ``epoch`` (``progress``, a :class:`~mindresnet.training.progress.EpochProgress`, counts it; ``steps`` per epoch)."""
        if self.interval and progress.step % self.interval == 0:
            logger.info("epoch %d/%d, step %d/%d: loss %.4f (epoch mean %.4f), %.1f s", epoch + 1, self.epochs,
                        progress.step, steps, loss, progress.loss_sum / progress.step, progress.seconds)
