"""Continuing a run where it stopped: reading its last checkpoint (or the backup), checking that it
fits this run, and restoring the stage's optimizer state and position in the epoch."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import mindspore as ms

from mindresnet.checkpoint import assign_parameters, read_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.errors import CheckpointError
from mindresnet.fileio import backup_path
from mindresnet.training.progress import EpochProgress

logger = logging.getLogger("mindresnet.training.resume")

# Prefixes of optimizer entries that the config, not the checkpoint, sets (per-group rates: learning_rate_group_<i>).
SCHEDULE_PARAMS = ("learning_rate", "momentum")
RESUME_MUST_MATCH = ("arch", "num_classes", "stem", "convention", "image_size", "preprocess", "val_split", "val_seed")


@dataclass
class ResumePoint:
    """Where a run stopped: the last checkpoint's parameters, metadata and progress in its epoch."""

    params: Dict[str, ms.Parameter]
    meta: CheckpointMeta
    progress: EpochProgress
    path: Path

    def restore(self, stage) -> None:
        """Load the optimizer state of ``stage`` (the stage that wrote the checkpoint) and its position."""
        if self.progress.step > stage.steps_per_epoch:
            raise CheckpointError(f"--resume: {self.path} stopped at step {self.progress.step} of epoch "
                                  f"{self.meta.epoch + 1}, but this run has {stage.steps_per_epoch} steps per epoch. "
                                  "Use the same --batch-size and --max-steps-per-epoch, or another --ckpt-dir.")
        # The LR table and momentum come from this run's config, so a longer --epochs extends the schedule.
        missing = [name for name in stage.restore(self.params, self.meta.epoch, self.progress.step)
                   if not name.startswith(SCHEDULE_PARAMS)]
        if missing:
            raise CheckpointError(f"--resume: {self.path} lacks {len(missing)} parameters of this run "
                                  f"({', '.join(missing[:5])}); it was not written by this --arch/--optimizer.")
        logger.info("resumed from %s at epoch %d, step %d (%s stage)", self.path, self.meta.epoch + 1,
                    self.progress.step, stage.name)


def read_resume(last_path: Path, meta: CheckpointMeta, head_epochs: int, net) -> ResumePoint:
    """Read ``last_path`` (or its backup), check it fits this run, and load its weights into ``net``.

    A checkpoint of the head stage continues in the head stage, or, written at its last epoch's
    end, starts the full stage from its weights; one of the full stage continues there.
    """
    params, stored, last_path = read_resume_checkpoint(last_path)
    if stored is None:
        raise CheckpointError(f"--resume: {last_path} has no mindresnet metadata; it was not written by "
                              "mindresnet.train. Point --ckpt-dir at the folder of the run to continue.")
    params = {k: v for k, v in params.items() if not k.startswith(SCHEDULE_PARAMS)}
    for key in RESUME_MUST_MATCH:
        if getattr(stored, key) != getattr(meta, key):
            raise CheckpointError(f"--resume: {last_path} was trained with {key}={getattr(stored, key)!r}, "
                                  f"this run has {key}={getattr(meta, key)!r}. Use the same flags or another "
                                  "--ckpt-dir.")
    expected = "head" if stored.epoch < head_epochs else "full"
    head_done = stored.stage == "head" and stored.epoch == head_epochs and stored.step == 0
    if stored.stage != expected and not head_done:
        raise CheckpointError(f"--resume: {last_path} was saved in the {stored.stage} stage at epoch {stored.epoch}, "
                              f"but this run's flags put epoch {stored.epoch + 1} in the {expected} stage. Use the "
                              "same --linear-probe and --freeze-epochs, or another --ckpt-dir.")
    missing = assign_parameters(net, params)
    if missing:
        raise CheckpointError(f"--resume: {last_path} lacks {len(missing)} weights of this network "
                              f"({', '.join(missing[:5])}); it was not written by this --arch.")
    progress = EpochProgress(step=stored.step, loss_sum=stored.epoch_loss_sum, seconds=stored.epoch_seconds)
    return ResumePoint(params, stored, progress, last_path)


def read_resume_checkpoint(last_path: Path):
    """``read_checkpoint`` of ``last_path``, or of its backup when ``last_path`` is unreadable.

    An unreadable ``last_path`` is renamed ``<name>.unreadable``, so that the next save keeps the
    valid backup as its backup.

    Returns:
        (parameters, metadata, the path read).

    Raises:
        CheckpointError: neither file is readable; the message names both and what to do.
    """
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
