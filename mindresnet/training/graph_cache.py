"""MindSpore's compile cache for training runs on CPU, under a key that a stale graph cannot pass.

MindSpore (``MS_COMPILER_CACHE_ENABLE``) saves each graph a process compiles as
``rank_<r>/graph_cache/compile_cache_<i>.mindir`` and, in a later process, loads the i-th graph
compiled instead of compiling it. It checks only the source of the entry script: another
``--arch`` or ``--batch-size`` got the old graph (bench/README.md). So every run gets its own
folder ``$MINDRESNET_HOME/graphs/<key>``, where the key hashes everything a run's graphs and their
order depend on: the whole config but ``--ckpt-dir``, the network's printed structure, mindresnet's
sources, the kernel library, MindSpore's and Python's versions, the ranks, and the data folder's
entries two levels deep (sizes and times, which the image counts follow). A run that resumes, runs
callbacks or computes class weights from the data compiles as before. A folder is used only once a
run that wrote it has finished (``complete`` marker) and by one process at a time (a lock); an
unfinished one is discarded. ``MINDRESNET_GRAPH_CACHE=0`` turns it off.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import mindspore as ms
from mindspore import nn

from mindresnet.hub import cache_dir
from mindresnet.kernels import loaded_library
from mindresnet.parsing import FALSE_WORDS

logger = logging.getLogger("mindresnet.training.graph_cache")

SWITCH_ENV = "MINDRESNET_GRAPH_CACHE"
KEPT_FOLDERS = 32  # the most recently used run folders that stay; older ones are deleted
_MS_ENV = ("MS_COMPILER_CACHE_ENABLE", "MS_COMPILER_CACHE_PATH")
_PACKAGE = Path(__file__).resolve().parents[1]


def why_not(config, callbacks: list, target: str) -> Optional[str]:
    """Why a run of ``config`` compiles without the cache, or None when it may use it."""
    if os.environ.get(SWITCH_ENV, "1").strip().lower() in FALSE_WORDS:
        return f"{SWITCH_ENV}=0"
    if any(os.environ.get(name) for name in _MS_ENV):
        return "MindSpore's own compile cache is set in the environment"
    if target != "CPU":
        return f"not on {target}"
    if config.resume_checkpoint() is not None:
        return "--resume compiles in another order"
    if callbacks:
        return "callbacks may compile graphs of their own"
    if config.class_weights:
        return "--class-weights puts values read from the data into the graph"
    return None


def run_key(config, net: nn.Cell, ranks: int, rank: int) -> str:
    """The key of a run's graphs (see the module docstring)."""
    settings = {name: value for name, value in config.to_dict().items() if name != "ckpt_dir"}
    network = re.sub(r" at 0x[0-9a-f]+", "", str(net))  # initializer objects print their address
    parts = {"config": settings, "network": network, "sources": _sources_digest(), "ms": ms.__version__,
             "python": sys.version, "ranks": [ranks, rank], "data": _data_entries(config.data_dir),
             "kernels": loaded_library()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


@contextlib.contextmanager
def graph_cache(key: Optional[str], rank: int) -> Iterator[Optional[Path]]:
    """Compile with MindSpore's cache in the folder of ``key`` for the block (None: without); yields the folder.

    The folder is marked complete when the block ends without an exception. If another process holds it,
    or MindSpore lacks the entry-script hook this relies on, the block compiles without the cache.
    """
    api = _mindspore_api()
    if key is None or api is None:
        yield None
        return
    root = cache_dir() / "graphs"
    folder = root / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f"rank_{rank}.lock", "w")
    except OSError as exc:
        logger.info("graph cache off: cannot write %s (%s)", folder, exc.strerror or exc)
        yield None
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            logger.info("graph cache %s is in use by another run: compiling without it", folder)
            yield None
            return
        rank_folder, marker = folder / f"rank_{rank}", folder / f"rank_{rank}.complete"
        reused = marker.exists()
        if not reused:
            shutil.rmtree(rank_folder, ignore_errors=True)  # left by a run that did not finish
        logger.info("graph cache %s: %s", folder, "reusing the compiled graphs" if reused else "saving the graphs")
        saved = {name: os.environ.get(name) for name in _MS_ENV}
        entry = api.entry_script_path
        os.environ.update(MS_COMPILER_CACHE_ENABLE="1", MS_COMPILER_CACHE_PATH=str(folder))
        if not os.path.isfile(str(entry)):  # under ``python -m`` MindSpore took "-m" for the script
            api.entry_script_path = _entry_script()
        try:
            yield folder
            marker.touch()
            os.utime(folder)
        finally:
            api.entry_script_path = entry
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    with contextlib.suppress(OSError):  # another run may be pruning too
        _prune(root, keep=KEPT_FOLDERS)


def _mindspore_api():
    """MindSpore's ``graph.api`` module when it has the ``entry_script_path`` the cache needs, else None."""
    try:
        from mindspore.graph import api
    except ImportError:
        return None
    return api if hasattr(api, "entry_script_path") and hasattr(api, "_get_compile_cache_dep_files") else None


def _entry_script() -> str:
    """The script MindSpore hashes with the files it imports: ``sys.argv[0]`` once ``python -m`` has set it."""
    script = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return script if os.path.isfile(script) else __file__


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*")):
        if path.suffix in (".py", ".cc", ".h") and path.is_file():
            digest.update(str(path.relative_to(_PACKAGE)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _data_entries(data_dir) -> List[list]:
    """Name, size and modification time of the entries of ``data_dir`` and of its folders (a folder's time
    changes when files are added to or removed from it)."""
    entries = []
    root = Path(data_dir)
    for level in (root, *sorted(path for path in root.iterdir() if path.is_dir())) if root.is_dir() else ():
        for entry in sorted(os.scandir(level), key=lambda item: item.name):
            info = entry.stat()
            entries.append([os.path.relpath(entry.path, root), info.st_size, info.st_mtime_ns])
    return entries


def _prune(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used folders of ``root`` (never one in use)."""
    folders = sorted((path for path in root.iterdir() if path.is_dir()), key=lambda path: path.stat().st_mtime,
                     reverse=True)
    for folder in folders[keep:]:
        with contextlib.suppress(OSError), open(folder / "rank_0.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(folder)
