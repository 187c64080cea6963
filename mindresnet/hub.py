"""Checked, cached, one-process-at-a-time downloads of weights and datasets.

Every URL goes through :func:`resolve_url`, so ``MINDRESNET_MIRROR`` redirects all of them,
and every file lands through :func:`fetch`: downloaded with the PyPI package ``download``
into a temporary name beside its destination, checked, then renamed. A partial or empty
file never takes the destination's name. A file whose publisher gives no SHA-256 is trusted on
first use: its SHA-256 is recorded beside it (``<file>.sha256``) and checked at every later use.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional
from mindresnet.errors import DownloadError
from mindresnet.fileio import write_text

MIRROR_ENV = "MINDRESNET_MIRROR"
HOME_ENV = "MINDRESNET_HOME"


def cache_dir() -> Path:
    """The cache folder: ``$MINDRESNET_HOME`` or ``~/.cache/mindresnet``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "mindresnet").expanduser()


def resolve_url(url: str) -> str:
    """``url`` with everything before its file name replaced by ``$MINDRESNET_MIRROR`` when set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + url.rsplit("/", 1)[-1]


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` so that only one process fills ``path``.

    The holder deletes the lock file before releasing it, so none is left behind; a process that
    waited on the deleted file sees that it no longer has that name and locks the new one instead.
    """
    lock_path = path.with_name(path.name + ".lock")
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(handle.fileno()), os.stat(lock_path)):
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        handle.close()


def offline_hint(url: str, dest: Path) -> str:
    """The sentence every failed download ends with: the two ways to work without the network."""
    name = url.rsplit("/", 1)[-1]
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    via = f" (now {MIRROR_ENV}={mirror})" if mirror else ""
    return (
        f"To work offline, either copy the file {name} (from {url}, fetched on another machine) to "
        f"{dest}, or set {MIRROR_ENV}=<base url> to a server that serves {name}{via}."
    )


def failure_reason(exc: BaseException) -> str:
    """The root cause of a failed download in a few words (``Connection refused``, ``HTTP Error 404``)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(getattr(exc, "reason", None) or exc).strip()


def fetch(
    url: str,
    dest: Path,
    sha256: Optional[str] = None,
    verify: Optional[Callable[[Path], None]] = None,
    progressbar: bool = True,
) -> Path:
    """Return ``dest``, downloading ``url`` there first unless a valid copy is already present.

    Args:
        url: original URL; ``$MINDRESNET_MIRROR`` is applied here.
        dest: final path of the file.
        sha256: expected hex digest, or its leading digits (at least 8, as MindCV and
            torchvision put in their file names), checked when given. Without it, the digest
            of the first download (or of a file found in place) is recorded in ``<dest>.sha256``
            and later uses, and later downloads, must match it.
        verify: extra check that raises on a bad file (e.g. "loads as a checkpoint").
        progressbar: show a progress bar while downloading.

    Raises:
        DownloadError: naming the URL, the destination and how to work offline.
    """
    dest = Path(dest)
    real_url = resolve_url(url)
    with file_lock(dest):
        if dest.exists():
            _check(dest, real_url, sha256, verify, dest)
            return dest
        workdir = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))
        try:
            partial = workdir / dest.name
            try:
                from download import download  # imported late: it pulls in tqdm and six

                download(real_url, str(partial), kind="file", progressbar=progressbar,
                         replace=True, verbose=False)
            except Exception as exc:  # network errors come in many types
                source = url if real_url == url else f"{url} (from the mirror: {real_url})"
                raise DownloadError(
                    f"Could not download {source}: {failure_reason(exc)}. {offline_hint(url, dest)}"
                ) from exc
            _check(partial, real_url, sha256, verify, dest)
            os.replace(partial, dest)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return dest


def recorded_sha256_path(dest: Path) -> Path:
    """Where the SHA-256 of a file without a published one is recorded at its first use."""
    return dest.with_name(dest.name + ".sha256")


def _check(path: Path, url: str, sha256: Optional[str], verify: Optional[Callable[[Path], None]],
           dest: Path) -> None:
    """Raise DownloadError unless ``path`` (``dest`` or its download) is whole and the expected file."""
    if not path.is_file() or path.stat().st_size == 0:
        raise DownloadError(f"{path} is empty (a failed download from {url}). Delete it and retry.")
    if sha256 and not sha256_of(path).startswith(sha256.lower()):
        raise DownloadError(
            f"{path} does not match the published SHA-256 {sha256} of {url}: the file is "
            "partial or altered. Delete it and retry."
        )
    record = recorded_sha256_path(dest)
    digest = None if sha256 else sha256_of(path)
    if digest and record.is_file():
        recorded = record.read_text().strip()
        if digest != recorded:
            fix = (f"Delete {dest} to download it again." if path == dest else
                   f"If its publisher replaced the file, delete {record} to trust the new one.")
            raise DownloadError(f"{path} (from {url}) does not match the SHA-256 recorded at the first download of "
                                f"{dest.name} ({recorded}, in {record}): the file is partial or altered. {fix}")
    if verify is not None:
        try:
            verify(path)
        except Exception as exc:
            raise DownloadError(f"{path} (from {url}) failed its check: {exc}. Delete it and retry.") from exc
    if digest and not record.is_file():
        write_text(record, digest + "\n")
