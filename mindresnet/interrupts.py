"""Signals that stop a tool: Ctrl-C that reaches Python even while MindSpore runs a graph, and
:class:`Preempted`, the exception a stop signal becomes.

During every graph run and PyNative operation, MindSpore installs a SIGINT handler of its own
that turns Ctrl-C into a SIGTERM to its own process: Ctrl-C looked like a scheduler's preemption
(exit 143) and broke off graph compiles with a frame dump. In the command-line tools,
:func:`route_sigint` runs before MindSpore is imported, so that every thread MindSpore starts
inherits SIGINT blocked; one watcher thread receives it and hands it to the main thread's Python
handler (:class:`mindresnet.training.signals.StopSignals` in training, else ``KeyboardInterrupt``).
"""
from __future__ import annotations

import _thread
import os
import signal
import sys
import threading

_received = threading.Event()


class Preempted(KeyboardInterrupt):
    """Training stopped on a signal; :attr:`exit_code` is the shell's ``128 + signal`` (130, 143)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def started_as_cli() -> bool:
    """Whether this process is a command-line tool: ``python -m mindresnet.<tool>`` (whose package
    import sees ``sys.argv[0] == "-m"``) or a ``mindresnet-<tool>`` script."""
    return sys.argv[0] == "-m" or os.path.basename(sys.argv[0]).startswith("mindresnet-")


def route_sigint() -> None:
    """Block SIGINT in this (main) thread and the threads it starts later; deliver it through a watcher."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    threading.Thread(target=_deliver, name="mindresnet-sigint", daemon=True).start()


def _deliver() -> None:
    while True:
        signal.sigwait({signal.SIGINT})
        _received.set()
        _thread.interrupt_main(signal.SIGINT)


def interrupted() -> bool:
    """Whether a Ctrl-C has arrived (an error raised after it is a consequence, not a bug)."""
    return _received.is_set()
