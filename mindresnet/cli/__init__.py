"""The command-line layer: every ``python -m mindresnet.<tool>`` runs through :func:`run_cli`.

A :class:`~mindresnet.errors.MindresnetError` is printed as ``error: ...`` with exit code 1; Ctrl-C
ends with one line and 130, SIGTERM with one line and 143 (training saves its step first, see
:mod:`mindresnet.training.signals`); any other exception is a bug and keeps its traceback. Shared flags
live in :mod:`mindresnet.cli.args`, value parsers in :mod:`mindresnet.parsing`.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Callable, Optional, Sequence

from mindresnet.errors import MindresnetError
from mindresnet.interrupts import Preempted, interrupted

EXIT_USER_ERROR = 1
EXIT_BAD_FLAGS = 2  # argparse's own
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def run_guarded(action: Callable[[], int]) -> int:
    """Run ``action``; turn a user error into ``error: ...`` on stderr and its exit code."""
    try:
        return action()
    except MindresnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:  # interrupts.Preempted carries 143 for SIGTERM
        return _stopped(getattr(exc, "signum", signal.SIGINT))
    except Exception:
        if interrupted():  # MindSpore breaks off a graph compile with an error of its own
            return _stopped(signal.SIGINT)
        raise


def _stopped(signum: int) -> int:
    """Say which signal stopped the tool; its exit code, 128 + the signal."""
    name = signal.Signals(signum).name
    print(f"stopped by {name}{' (Ctrl-C)' if signum == signal.SIGINT else ''}", file=sys.stderr)
    return 128 + signum


def _raise_preempted(signum: int, frame) -> None:
    raise Preempted(signum)


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
            argv: Optional[Sequence[str]] = None, log_level: int = logging.WARNING) -> int:
    """Parse ``argv`` with ``parser`` and call ``run`` through :func:`run_guarded`.

    Returns:
        The exit code: ``run``'s, 1 on a user error, 2 on bad flags, 130 on Ctrl-C.
    """
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return int(exc.code or 0)
    if threading.current_thread() is not threading.main_thread():
        return run_guarded(lambda: run(args))
    previous = signal.signal(signal.SIGTERM, _raise_preempted)
    try:
        return run_guarded(lambda: run(args))
    finally:
        signal.signal(signal.SIGTERM, previous)
