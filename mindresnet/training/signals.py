"""Stopping a training run on a signal, at a step boundary.

A scheduler or a cloud preempts a job with SIGTERM (then SIGKILL after a grace period); a user
presses Ctrl-C (SIGINT). While :class:`StopSignals` is active, either signal asks the run to stop
at the next step boundary (:meth:`StopSignals.check` raises :class:`Preempted` there), so the
state saved is the state after a whole number of steps (:mod:`mindresnet.training.resume` continues
it). Work that can be thrown away, such as evaluation, runs inside :meth:`StopSignals.abortable`
and is cut short at once.

In a data-parallel run only rank 0 saves. The other ranks keep stepping after a signal, so that
rank 0 can finish its step (every step waits for all ranks); once rank 0 has saved and exited,
the launcher (msrun, ``scripts/run_distribute_train.sh``) ends them. Should nothing end them,
they exit on their own after :data:`PEER_GRACE_S` seconds.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Iterator, Optional

from mindresnet.interrupts import Preempted

logger = logging.getLogger("mindresnet.training.signals")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PEER_GRACE_S = 60.0


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
