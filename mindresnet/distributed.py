"""Data-parallel set-up for runs launched by ``msrun``: communication, parallel mode, this rank's shard."""
from __future__ import annotations

import os
from dataclasses import dataclass


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
        """Rank 0 downloads, evaluates and writes checkpoints, metrics and plots."""
        return self.rank == 0


def launched_by_msrun() -> bool:
    """True inside a worker started by ``msrun`` (it sets MS_WORKER_NUM and MS_ROLE)."""
    return int(os.environ.get("MS_WORKER_NUM", "1")) > 1 and os.environ.get("MS_ROLE") == "MS_WORKER"


def init_distributed() -> DistInfo:
    """Initialise communication and DATA_PARALLEL (gradients averaged) when launched by msrun."""
    if not launched_by_msrun():
        return DistInfo()
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    init()
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=size)
    return DistInfo(rank=rank, shards=size)
