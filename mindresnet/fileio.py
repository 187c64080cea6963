"""Atomic file writes: the files mindresnet produces (checkpoints, config, metrics, figures,
exports, class indices) go through :func:`atomic_path`. Downloads have their own work folder
(``hub.fetch``), since the ``download`` package may leave files of its own beside the target.

The content is written under a temporary name in the target's folder and renamed over the
target only when the write succeeded, so a crash, Ctrl-C or full disk never leaves a half-written
checkpoint, log or figure under the final name (the old file stays whole).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure delete it.

    Args:
        path: the final file (its folder is created).
        suffix: appended to the temporary name, for writers that pick the format from it
            (``savefig``) or append an extension to names without it (``ms.save_checkpoint``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
