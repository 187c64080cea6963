"""CIFAR-10 pipeline: real subset, both readers, sharding, download, bad input."""
from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CLASS_NAMES, collect, write_cifar_bin
from mindresnet import hub
from mindresnet.data import (CIFAR10_MEAN, CIFAR10_STD, RECORD_BYTES, DataError, create_dataset_cifar10,
                             cifar10_preprocess)
from mindresnet.data.transforms import resolve_workers
from mindresnet.errors import DownloadError
from mindresnet.runtime import cpu_count


def raw_labels(files):
    return np.concatenate([np.fromfile(path, np.uint8)[::RECORD_BYTES] for path in files])


# --- real subset ---------------------------------------------------------------------------------

@pytest.mark.parametrize("usage,expected", [("train", 5085), ("test", 1017)])
def test_real_subset_counts_shapes_and_labels(real_subset, usage, expected):
    dataset, names = create_dataset_cifar10(real_subset, usage=usage, batch_size=512, drop_remainder=False)
    images, labels = collect(dataset)
    assert names == CLASS_NAMES
    assert images.shape == (expected, 3, 32, 32)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert -2.5 < images.min() < -1.5 and 2.0 < images.max() < 2.8
    files = sorted(real_subset.glob("data_batch_*.bin")) if usage == "train" else [real_subset / "test_batch.bin"]
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.bincount(raw_labels(files), minlength=10))


def test_real_subset_through_parent_folder_and_numpy_reader_logged(real_subset, caplog):
    with caplog.at_level(logging.INFO, logger="mindresnet.data"):
        dataset, _ = create_dataset_cifar10(real_subset.parent, usage="test", batch_size=256)
    assert dataset.get_dataset_size() == 4  # 1017 images, last batch kept for test
    assert "numpy reader" in caplog.text and "Cifar10Dataset" not in caplog.text


# --- transforms ----------------------------------------------------------------------------------

def test_test_pipeline_is_normalised_raw_pixels_and_matches_preprocess_apply(tiny_cifar):
    dataset, _ = create_dataset_cifar10(tiny_cifar, usage="test", batch_size=8)
    images, labels = collect(dataset)
    raw = np.fromfile(tiny_cifar / "test_batch.bin", np.uint8).reshape(-1, RECORD_BYTES)
    pixels = raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255
    expected = (pixels - np.array(CIFAR10_MEAN)[:, None, None]) / np.array(CIFAR10_STD)[:, None, None]
    np.testing.assert_allclose(images, expected, atol=1e-5)
    np.testing.assert_array_equal(labels, raw[:, 0])
    pil = Image.fromarray(raw[3, 1:].reshape(3, 32, 32).transpose(1, 2, 0))
    np.testing.assert_allclose(cifar10_preprocess(32).apply(pil), images[3], atol=1e-6)


def test_train_pipeline_augments_and_resizes(tiny_cifar):
    dataset, _ = create_dataset_cifar10(tiny_cifar, usage="train", image_size=48, batch_size=16)
    images, labels = collect(dataset)
    assert images.shape == (96, 3, 48, 48)  # 100 records, remainder dropped for train
    assert images.dtype == np.float32 and set(labels.tolist()) <= set(range(10))
    plain, _ = collect(create_dataset_cifar10(tiny_cifar, usage="train", image_size=48, batch_size=16,
                                              augment=False, shuffle=False)[0])
    assert not np.allclose(np.sort(images.ravel()), np.sort(plain.ravel()))  # crops pad with black


# --- the two readers -----------------------------------------------------------------------------

def test_standard_files_use_cifar10dataset_and_match_numpy_reader(tmp_path, caplog):
    full = write_cifar_bin(tmp_path / "full", records_per_file=10000, files=("data_batch_1.bin",), test_records=10000)
    # The same 10000 records split into two files of 5000: not standard, so the numpy reader.
    split = tmp_path / "split"
    split.mkdir()
    data = (full / "data_batch_1.bin").read_bytes()
    (split / "data_batch_1.bin").write_bytes(data[:5000 * RECORD_BYTES])
    (split / "data_batch_2.bin").write_bytes(data[5000 * RECORD_BYTES:])
    (split / "batches.meta.txt").write_bytes((full / "batches.meta.txt").read_bytes())
    options = dict(usage="train", batch_size=2500, augment=False, shuffle=False, num_shards=2, shard_id=1)
    with caplog.at_level(logging.INFO, logger="mindresnet.data"):
        standard = collect(create_dataset_cifar10(full, **options)[0])
        assert "read with Cifar10Dataset" in caplog.text
        caplog.clear()
        ours = collect(create_dataset_cifar10(split, **options)[0])
        assert "numpy reader" in caplog.text
    assert standard[0].shape == (5000, 3, 32, 32)
    np.testing.assert_array_equal(standard[0], ours[0])
    np.testing.assert_array_equal(standard[1], ours[1])


def test_sharding_splits_numpy_reader_into_disjoint_halves(tiny_cifar):
    def fingerprints(shard_id):
        images, _ = collect(create_dataset_cifar10(tiny_cifar, usage="train", batch_size=10, augment=False,
                                                   drop_remainder=False, num_shards=2, shard_id=shard_id)[0])
        return {hashlib.sha1(image.tobytes()).hexdigest() for image in images}

    first, second = fingerprints(0), fingerprints(1)
    assert len(first) == len(second) == 50
    assert not first & second


def test_workers_default_to_cores_and_are_capped():
    assert resolve_workers(None) == cpu_count()
    assert resolve_workers(10_000) == cpu_count()
    assert resolve_workers(1) == 1
    with pytest.raises(ValueError):
        resolve_workers(0)


# --- download ------------------------------------------------------------------------------------

def make_archive(path: Path, source: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-bin")
    return path


def test_download_from_mirror_once_then_cached(tmp_path, monkeypatch, file_server):
    served, base, requests = file_server
    make_archive(served / "cifar-10-binary.tar.gz", write_cifar_bin(tmp_path / "src" / "cifar-10-batches-bin"))
    monkeypatch.setenv("MINDRESNET_MIRROR", base)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    data_dir = tmp_path / "data"

    dataset, names = create_dataset_cifar10(data_dir, usage="test", batch_size=5, download=True)
    assert names == CLASS_NAMES and dataset.get_dataset_size() == 4
    first_download = len(requests)  # the `download` package may send several GETs for one file
    assert first_download >= 1
    assert (data_dir / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert (tmp_path / "home" / "datasets" / "cifar-10-binary.tar.gz").is_file()
    assert not list(data_dir.glob(".extract-*"))

    create_dataset_cifar10(data_dir, usage="train", batch_size=5, download=True)
    create_dataset_cifar10(data_dir / "cifar-10-batches-bin", usage="train", batch_size=5, download=True)
    other, _ = create_dataset_cifar10(tmp_path / "other", usage="train", batch_size=5, download=True)
    assert other.get_dataset_size() == 20  # extracted from the cached archive
    assert len(requests) == first_download


def test_offline_download_names_url_and_folder_and_leaves_nothing_behind(tmp_path, monkeypatch, closed_port_url):
    monkeypatch.setenv("MINDRESNET_MIRROR", closed_port_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    with pytest.raises(hub.DownloadError) as info:
        create_dataset_cifar10(tmp_path / "new" / "data", download=True)
    message = str(info.value)
    assert f"{closed_port_url}cifar-10-binary.tar.gz" in message
    assert str(tmp_path / "new" / "data" / "cifar-10-batches-bin") in message
    assert not (tmp_path / "new").exists()  # the folders it created, removed again
    assert not list(tmp_path.rglob("*.lock"))
    mine = tmp_path / "mine"  # a folder the user made stays
    mine.mkdir()
    with pytest.raises(hub.DownloadError):
        create_dataset_cifar10(mine, download=True)
    assert mine.is_dir() and not list(mine.iterdir())


def test_archive_with_parent_path_member_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    archive = tmp_path / "home" / "datasets" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"escaped"
        member = tarfile.TarInfo("cifar-10-batches-bin/../../evil.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    data_dir = tmp_path / "deep" / "data"
    with pytest.raises(DataError, match=r"unsafe member.*\.\."):
        create_dataset_cifar10(data_dir, download=True)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (data_dir / "cifar-10-batches-bin").exists() and not list(data_dir.glob(".extract-*"))


# --- bad input -----------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        create_dataset_cifar10(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value) and "download" in str(info.value)


def test_folder_without_cifar_files(tmp_path):
    with pytest.raises(DataError, match="holds no CIFAR-10 binary files"):
        create_dataset_cifar10(tmp_path)


def test_truncated_file(tiny_cifar):
    path = tiny_cifar / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="not a whole number of 3073-byte") as info:
        create_dataset_cifar10(tiny_cifar, usage="train")
    assert str(path) in str(info.value) and "download" in str(info.value)


def test_label_byte_out_of_range(tiny_cifar):
    path = tiny_cifar / "test_batch.bin"
    data = bytearray(path.read_bytes())
    data[5 * RECORD_BYTES] = 10
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="record 5 has label byte 10") as info:
        create_dataset_cifar10(tiny_cifar, usage="test")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [None, "", "\n\n", "cat\ndog\n"])
def test_bad_class_file(tiny_cifar, content):
    meta = tiny_cifar / "batches.meta.txt"
    if content is None:
        meta.unlink()
    else:
        meta.write_text(content)
    with pytest.raises(DataError) as info:
        create_dataset_cifar10(tiny_cifar, usage="test")
    assert str(meta) in str(info.value) and "download" in str(info.value)


def test_missing_split_file(tiny_cifar):
    (tiny_cifar / "test_batch.bin").unlink()
    with pytest.raises(DataError, match="test_batch.bin"):
        create_dataset_cifar10(tiny_cifar, usage="test")


def test_bad_usage(tiny_cifar):
    with pytest.raises(ValueError, match="usage"):
        create_dataset_cifar10(tiny_cifar, usage="val")


def test_offline_cifar10_download_says_where_the_files_go(tmp_path, closed_port_url, monkeypatch):
    from mindresnet.data.cifar10 import download_cifar10

    monkeypatch.setenv(hub.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(hub.MIRROR_ENV, closed_port_url)
    with pytest.raises(DownloadError) as caught:
        download_cifar10(tmp_path / "data")
    message = str(caught.value)
    assert str(tmp_path / "home" / "datasets" / "cifar-10-binary.tar.gz") in message
    assert str(tmp_path / "data" / "cifar-10-batches-bin") in message and "MINDRESNET_MIRROR" in message
