"""Data-parallel set-up for runs launched by ``msrun``: communication, parallel mode, this rank's shard.

``msrun`` starts one scheduler and N workers, all running the same command; it tells them apart
with ``MS_ROLE`` (``MS_SCHED`` or ``MS_WORKER``) and sets ``MS_WORKER_NUM``. Every one of them
must call ``init()``: the scheduler serves the cluster from inside it and exits there when the
workers are done. Test hooks, read from the environment of the workers:

* ``MINDRESNET_FAIL_RANK=<r>``: rank ``r`` raises :class:`InjectedFailure` right after ``init()``
  (checks that a dead worker stops the launcher with its log, rather than hanging it).
* ``MINDRESNET_SAVE_RANK_WEIGHTS=1``: every rank other than 0 also saves its final train state
  as ``<ckpt_dir>/rank<r>/<arch>-last.rank<r>.ckpt`` (checks that ranks stay in step).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

FAIL_RANK_ENV = "MINDRESNET_FAIL_RANK"
SAVE_RANK_WEIGHTS_ENV = "MINDRESNET_SAVE_RANK_WEIGHTS"
MSRUN_ROLES = ("MS_WORKER", "MS_SCHED")


class InjectedFailure(RuntimeError):
    """Raised on purpose by the ``MINDRESNET_FAIL_RANK`` test hook."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: ``shards`` ranks in all, this one ``shard_id``."""

    rank: int = 0
    shards: int = 1

    @property
    def shard_id(self) -> int:
        return self.rank

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates and writes checkpoints, metrics and plots."""
        return self.rank == 0


def launched_by_msrun() -> bool:
    """True inside a process started by ``msrun`` (worker or scheduler), even with one worker."""
    return "MS_WORKER_NUM" in os.environ and os.environ.get("MS_ROLE") in MSRUN_ROLES


def init_distributed() -> DistInfo:
    """Initialise communication and DATA_PARALLEL (gradients averaged) when launched by msrun.

    Call it after the device is set. In msrun's scheduler process it does not return.

    Raises:
        InjectedFailure: this rank is ``$MINDRESNET_FAIL_RANK``.
    """
    if not launched_by_msrun():
        return DistInfo()
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    init()
    if os.environ.get("MS_ROLE") == "MS_SCHED":  # init() normally exits there already
        sys.exit(0)
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=size)
    fail_if_requested(rank)
    return DistInfo(rank=rank, shards=size)


def fail_if_requested(rank: int) -> None:
    """The ``MINDRESNET_FAIL_RANK`` test hook: raise InjectedFailure when it names ``rank``."""
    wanted = os.environ.get(FAIL_RANK_ENV, "").strip()
    if wanted and wanted == str(rank):
        raise InjectedFailure(f"{FAIL_RANK_ENV}={wanted}: rank {rank} fails on purpose (test hook).")


def rank_weights_path(last_path: Path, dist: DistInfo) -> Optional[Path]:
    """Where a non-main rank saves its final train state, or None (rank 0, or hook not set).

    ``<ckpt_dir>/<arch>-last.ckpt`` becomes ``<ckpt_dir>/rank<r>/<arch>-last.rank<r>.ckpt``.
    """
    if dist.is_main or os.environ.get(SAVE_RANK_WEIGHTS_ENV, "").strip().lower() not in ("1", "true", "yes"):
        return None
    last_path = Path(last_path)
    return last_path.parent / f"rank{dist.rank}" / f"{last_path.stem}.rank{dist.rank}{last_path.suffix}"
