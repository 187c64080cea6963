"""Atomic file writes: the files mindresnet produces (checkpoints, config, metrics, figures,
exports, class indices) go through :func:`atomic_path`. Downloads have their own work folder
(``hub.fetch``), since the ``download`` package may leave files of its own beside the target.

The content is written under a temporary name in the target's folder and renamed over the
target only when the write succeeded (and, when asked, the new file passed a check), so a crash,
a signal or a full disk never leaves a half-written checkpoint, log or figure under the final
name: the old file stays whole. A failed write raises :class:`~mindresnet.errors.WriteError`
naming the file. With ``keep_backup`` the file being replaced stays beside it as
``<stem>.bak<suffix>`` (:func:`backup_path`), for a target that must survive a later bad copy.
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from mindresnet.errors import WriteError

PathLike = Union[str, os.PathLike]
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def backup_path(path: PathLike) -> Path:
    """Where :func:`atomic_path` keeps the previous version of ``path``: ``<stem>.bak<suffix>``.

    The suffix stays last because readers check it (``ms.load_checkpoint`` wants ``.ckpt``).
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.bak{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "", keep_backup: bool = False,
                verify: Optional[Callable[[Path], object]] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure delete it.

    Args:
        path: the final file (its folder is created).
        suffix: appended to the temporary name, for writers that pick the format from it
            (``savefig``) or append an extension to names without it (``ms.save_checkpoint``).
        keep_backup: move the current ``path`` (if any) to :func:`backup_path` just before the
            new file takes its name, so that one previous version always survives.
        verify: called with the temporary file once written; an exception there keeps the old
            ``path`` (and its backup) untouched and propagates.

    Raises:
        WriteError: the write or the rename failed with an OSError (full disk, permissions);
            the message names ``path`` and says that the previous file is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if verify is not None:
            verify(tmp)
        if keep_backup and path.exists():
            _replace_backup(path)
        os.replace(tmp, path)
    except OSError as exc:
        if isinstance(exc, WriteError):
            raise
        raise write_error(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):  # the parent may be unwritable or a file: keep the first error
            tmp.unlink(missing_ok=True)


def write_error(path: Path, exc: OSError) -> WriteError:
    """A WriteError for ``path`` that says what failed and what to do."""
    reason = exc.strerror or str(exc)
    if exc.errno in NO_SPACE:
        fix = (f"Free space on the disk of {path.parent} (or write to another disk, e.g. --ckpt-dir / "
               "--out), then run again.")
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST) and not path.parent.is_dir():
        fix = f"{_first_file(path.parent)} is a file, not a folder: choose another output path."
    elif exc.errno == errno.EISDIR or path.is_dir():
        fix = f"{path} is a folder: give a file name instead."
    else:
        fix = f"Check that {path.parent} is writable, then run again."
    kept = "the previous file is unchanged" if path.exists() else "nothing was written"
    return WriteError(exc.errno or errno.EIO, f"Could not write {path}: {reason} ({kept}). {fix}")


def _first_file(folder: Path) -> Path:
    """The first component of ``folder`` that exists and is not a folder (``folder`` itself if none)."""
    for part in reversed((folder, *folder.parents)):
        if part.exists() and not part.is_dir():
            return part
    return folder


def _replace_backup(path: Path) -> None:
    """Make the backup of ``path`` a copy of it (a hard link: instant, no extra space, ``path`` stays)."""
    backup = backup_path(path)
    staging = backup.with_name(f".{backup.name}.tmp{os.getpid()}")
    staging.unlink(missing_ok=True)
    try:
        os.link(path, staging)
    except OSError:  # a file system without hard links
        os.replace(path, staging)
    os.replace(staging, backup)


def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def save_figure(fig, path: PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically and return the path."""
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)
