"""A training run owns its ``--ckpt-dir``: one run at a time, and no earlier results lost.

:func:`own_folder` holds a lock file (:data:`LOCK_FILE`, an ``flock`` that the kernel releases
when its process dies) for the whole run; a second run into the folder is refused at once with
the holder's PID, host and start time. A lock file left by a process that no longer holds it is
taken over, with a log line. A folder that holds an earlier run's results is reused only to
``--resume`` that run; ``--overwrite`` first moves the results into a ``previous-<time>/``
subfolder, where they stay.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator, List

from mindresnet.errors import ConfigError
from mindresnet.fileio import write_error

logger = logging.getLogger(__name__)

LOCK_FILE = ".mindresnet.lock"
# What a run leaves in its folder; the first five say that an earlier run's results are there.
RESULTS = ("*-best.ckpt", "*-last.ckpt", "*-top[0-9]*.ckpt", "metrics.csv", "config.yaml")
BY_PRODUCTS = ("*-top.json", "*.bak.ckpt", "*.unreadable", "training_curves.png", "class_indices.json",
               "train.log")


def earlier_results(folder: Path) -> List[Path]:
    """The files of :data:`RESULTS` in ``folder``, sorted."""
    return sorted({path for pattern in RESULTS for path in folder.glob(pattern) if path.is_file()})


@contextlib.contextmanager
def own_folder(folder: Path, leader: bool = True, resume: bool = False, overwrite: bool = False) -> Iterator[Path]:
    """Hold ``folder`` for a training run (created if needed) while the block runs.

    Args:
        folder: the run's ``--ckpt-dir``.
        leader: this process writes the run (rank 0, or a run of one process); the others do nothing.
        resume: the run continues the one whose results the folder holds.
        overwrite: move an earlier run's files into ``previous-<time>/`` first.

    Raises:
        ConfigError: another live run holds the folder; it holds an earlier run's results and
            neither ``resume`` nor ``overwrite`` is set; both are set; ``folder`` is a file.
        WriteError: the folder or its lock cannot be written.
    """
    folder = Path(folder)
    if not leader:
        yield folder
        return
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --ckpt-dir, --overwrite moves it aside: pass one of them.")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--ckpt-dir {folder} is a file, not a folder. Pass a folder for the run's checkpoints.")
    lock = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(lock, exc) from exc
    fd = _take(lock)
    try:
        found = earlier_results(folder)
        if found and overwrite:
            _move_aside(folder)
        elif found and not resume:
            names = ", ".join(path.name for path in found[:6]) + (" ..." if len(found) > 6 else "")
            raise ConfigError(f"--ckpt-dir {folder} holds an earlier run's results ({names}). Pass --resume to "
                              "continue that run, --overwrite to start anew (its files are moved into a "
                              "previous-<time>/ subfolder, not deleted), or another --ckpt-dir.")
        yield folder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # still ours: nobody else removes a lock that is held
        os.close(fd)


def _take(lock: Path) -> int:
    """Open and lock the file ``lock``, write this process in it and return its descriptor, or raise
    ConfigError naming the holder."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(lock, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise ConfigError(f"--ckpt-dir {lock.parent} is in use by another training run ({holder}). "
                                  "Wait for it to finish, or pass another --ckpt-dir.") from None
            raise write_error(lock, exc) from exc
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        os.close(fd)  # its holder removed the file as we locked it: lock the one now there
    previous = _holder(fd)
    if previous:
        logger.warning("%s was left by a run that has ended (%s); taking it over", lock, previous)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise write_error(lock, exc) from exc
    return fd


def _holder(fd: int) -> str:
    """Who the lock file says holds it: ``PID p on host h since t``, or '' when empty or unreadable."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"null")
        return f"PID {holder['pid']} on host {holder['host']} since {holder['started']}" if holder else ""
    except (OSError, ValueError, TypeError, KeyError):
        return "holder unknown: the lock file is unreadable"


def _move_aside(folder: Path) -> Path:
    """Move the files an earlier run left in ``folder`` into a new ``previous-<time>/`` subfolder."""
    target = folder / time.strftime("previous-%Y%m%d-%H%M%S")
    suffix = 1
    while target.exists():
        target, suffix = target.with_name(f"{target.name.split('.')[0]}.{suffix}"), suffix + 1
    files = sorted({path for pattern in RESULTS + BY_PRODUCTS for path in folder.glob(pattern) if path.is_file()})
    try:
        target.mkdir()
        for path in files:
            os.replace(path, target / path.name)
    except OSError as exc:
        raise write_error(target, exc) from exc
    logger.warning("--overwrite: moved %d files of the earlier run into %s", len(files), target)
    return target
