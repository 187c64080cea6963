"""mindresnet.hub: downloads checked by SHA-256 (recorded at first use), offline and mirror errors, file locks."""
import os
import re
import tarfile
import threading
import time

import pytest

import mindresnet
from mindresnet import hub
from mindresnet.checkpoint import save_checkpoint
from mindresnet.errors import DownloadError

from conftest import write_cifar_bin

URL = "https://example.org/files/blob.bin"


@pytest.fixture
def served_blob(file_server, monkeypatch):
    folder, base_url, requests = file_server
    (folder / "blob.bin").write_bytes(os.urandom(4096))
    monkeypatch.setenv(hub.MIRROR_ENV, base_url)
    return folder / "blob.bin", requests


def test_first_download_records_its_sha256_and_later_uses_check_it(tmp_path, served_blob):
    served, requests = served_blob
    dest = tmp_path / "cache" / "blob.bin"
    hub.fetch(URL, dest, progressbar=False)
    record = tmp_path / "cache" / "blob.bin.sha256"
    assert record.read_text().strip() == hub.sha256_of(served)
    downloads = len(requests)
    hub.fetch(URL, dest, progressbar=False)
    assert len(requests) == downloads, "a checked copy is reused"

    dest.write_bytes(dest.read_bytes()[:-1] + b"?")  # bit rot, a cut copy, tampering
    with pytest.raises(hub.DownloadError, match=r"blob\.bin \(from .*\) does not match the SHA-256 recorded at the "
                                                r"first download of blob\.bin .*Delete .*blob\.bin to download it again"):
        hub.fetch(URL, dest, progressbar=False)
    dest.unlink()
    assert hub.fetch(URL, dest, progressbar=False).read_bytes() == served.read_bytes()


def test_a_download_that_differs_from_the_first_is_refused(tmp_path, served_blob):
    served, _ = served_blob
    dest = tmp_path / "cache" / "blob.bin"
    hub.fetch(URL, dest, progressbar=False)
    dest.unlink()
    served.write_bytes(os.urandom(4096))  # the host now serves another file
    with pytest.raises(hub.DownloadError, match=r"If its publisher replaced the file, delete .*blob\.bin\.sha256"):
        hub.fetch(URL, dest, progressbar=False)
    assert not dest.exists()
    hub.recorded_sha256_path(dest).unlink()
    assert hub.fetch(URL, dest, progressbar=False).read_bytes() == served.read_bytes()


def test_a_file_copied_into_the_cache_is_trusted_on_first_use(tmp_path, served_blob):
    _, requests = served_blob
    dest = tmp_path / "cache" / "blob.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"copied by hand")
    hub.fetch(URL, dest, progressbar=False)
    assert not requests
    assert hub.recorded_sha256_path(dest).read_text().strip() == hub.sha256_of(dest)


def test_a_published_sha256_needs_no_record(tmp_path, served_blob):
    served, _ = served_blob
    dest = tmp_path / "cache" / "blob.bin"
    hub.fetch(URL, dest, sha256=hub.sha256_of(served), progressbar=False)
    assert not hub.recorded_sha256_path(dest).exists()


def test_the_tutorial_checkpoint_and_the_cifar_archive_are_recorded(tmp_path, monkeypatch, file_server):
    from mindresnet.data import cifar10

    folder, base_url, _ = file_server
    save_checkpoint(mindresnet.resnet50(), folder / "resnet50_224_new.ckpt")
    source = write_cifar_bin(tmp_path / "src" / "cifar-10-batches-bin", records_per_file=4)
    with tarfile.open(folder / cifar10.CIFAR10_ARCHIVE, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-bin")
    monkeypatch.setenv(hub.MIRROR_ENV, base_url)
    monkeypatch.setenv(hub.HOME_ENV, str(tmp_path / "home"))
    mindresnet.resnet50(num_classes=10, pretrained=True)
    cifar10.locate_cifar10(tmp_path / "data", download=True)
    for cached, served in [("checkpoints/resnet50_224_new.ckpt", "resnet50_224_new.ckpt"),
                           (f"datasets/{cifar10.CIFAR10_ARCHIVE}", cifar10.CIFAR10_ARCHIVE)]:
        record = hub.recorded_sha256_path(tmp_path / "home" / cached)
        assert record.read_text().strip() == hub.sha256_of(folder / served), cached


def test_file_locks_exclude_each_other_and_leave_no_lock_file(tmp_path):
    """The holder deletes the lock file; a waiter that locked the deleted file must lock the new one."""
    dest = tmp_path / "sub" / "thing.bin"
    inside, most = [], []

    def hold():
        with hub.file_lock(dest):
            inside.append(1)
            most.append(len(inside))
            time.sleep(0.02)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(most) == 8 and max(most) == 1
    assert not list(tmp_path.rglob("*.lock"))


def test_offline_download_names_url_cache_path_and_both_fixes(tmp_path, closed_port_url, monkeypatch):
    monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
    dest = tmp_path / "cache" / "checkpoints" / "resnet18-1e65cd21.ckpt"
    url = closed_port_url + "toolkits/resnet18-1e65cd21.ckpt"
    with pytest.raises(DownloadError) as caught:
        hub.fetch(url, dest, progressbar=False)
    message = str(caught.value)
    assert message.startswith(f"Could not download {url}: ") and "Connection refused" in message
    assert f"copy the file resnet18-1e65cd21.ckpt (from {url}, fetched on another machine) to {dest}" in message
    assert "set MINDRESNET_MIRROR=<base url> to a server that serves resnet18-1e65cd21.ckpt" in message
    assert "Traceback" not in message and not dest.exists()


def test_a_dead_mirror_is_named_next_to_the_original_url(tmp_path, closed_port_url, monkeypatch):
    from mindresnet.models import pretrained

    monkeypatch.setenv(hub.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(hub.MIRROR_ENV, closed_port_url + "mirror")
    with pytest.raises(DownloadError) as caught:
        pretrained.download_pretrained("resnet18")
    message = str(caught.value)
    official = re.match(r"Could not download (https://\S+/(\S+\.ckpt)) \(from the mirror: (\S+)\)", message)
    assert official, message
    assert official.group(3) == f"{closed_port_url}mirror/{official.group(2)}"
    assert str(tmp_path / "home" / "checkpoints" / official.group(2)) in message
    assert f"(now MINDRESNET_MIRROR={closed_port_url}mirror)" in message
