"""Image-folder pipeline: class indices, shapes, PIL modes, prediction preprocessing, bad input."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mindresnet.data import DataError, create_dataset_folder, imagenet_preprocess, read_class_indices

from conftest import collect

CLASSES = ["dog", "cat", "bird"]  # created unsorted on purpose
# (mode, file extension): every class gets one image of each
VARIANTS = [("RGB", ".jpg"), ("RGBA", ".png"), ("L", ".jpeg"), ("P", ".bmp")]


def save_image(path: Path, mode: str, seed: int, size=(40, 30)) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


@pytest.fixture
def image_root(tmp_path) -> Path:
    """root/train/<class>/ 4 images (RGB jpg, RGBA png, L jpeg, P bmp); root/val/<class>/ 2 PNGs."""
    root = tmp_path / "flowers"
    for c, name in enumerate(CLASSES):
        for i, (mode, ext) in enumerate(VARIANTS):
            save_image(root / "train" / name / f"{mode.lower()}_{i}{ext}", mode, seed=10 * c + i)
        for i in range(2):
            save_image(root / "val" / name / f"val_{i}.png", "RGB", seed=100 + 10 * c + i)
    return root


def test_train_split_shapes_and_sorted_classes(image_root):
    dataset, names = create_dataset_folder(image_root, usage="train", image_size=64, batch_size=5, workers=1)
    images, labels = collect(dataset)
    assert names == ["bird", "cat", "dog"]
    assert images.shape == (10, 3, 64, 64)  # 12 images, remainder dropped for train
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert set(labels.tolist()) <= {0, 1, 2}
    assert -2.2 < images.min() < 0 < images.max() < 2.7


def test_val_split_labels_follow_class_folders(image_root):
    dataset, names = create_dataset_folder(image_root, usage="val", image_size=64, batch_size=4)
    images, labels = collect(dataset)
    assert images.shape == (6, 3, 64, 64)  # remainder kept for val
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_preprocess_apply_matches_val_pipeline(image_root):
    dataset, _ = create_dataset_folder(image_root, usage="val", image_size=64, batch_size=6)
    images, _ = collect(dataset)
    with Image.open(image_root / "val" / "cat" / "val_1.png") as pil:  # index 3: bird x2, then cat
        single = imagenet_preprocess(64).apply(pil)
    assert single.shape == (3, 64, 64) and single.dtype == np.float32
    np.testing.assert_allclose(single, images[3], atol=1e-5)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA", "CMYK"])
@pytest.mark.parametrize("size", [32, 64])
def test_preprocess_apply_any_mode(mode, size):
    image = Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).convert(mode)
    out = imagenet_preprocess(size).apply(image)
    assert out.shape == (3, size, size) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_class_indices_round_trip(image_root, tmp_path):
    path = tmp_path / "run" / "class_indices.json"
    _, names = create_dataset_folder(image_root, usage="val", image_size=32, class_indices_path=path)
    assert json.loads(path.read_text()) == {"0": "bird", "1": "cat", "2": "dog"}
    assert read_class_indices(path) == names
    assert [p.name for p in path.parent.iterdir()] == ["class_indices.json"]  # no temp file left


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]", '{"0": "a", "2": "b"}', "{}"])
def test_bad_class_indices_file(tmp_path, content):
    path = tmp_path / "class_indices.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as info:
        read_class_indices(path)
    assert str(path) in str(info.value)


def test_sharding_splits_the_files(image_root):
    sizes = [collect(create_dataset_folder(image_root, usage="val", image_size=32, batch_size=2, num_shards=2,
                                           shard_id=shard)[0])[0].shape[0] for shard in (0, 1)]
    assert sizes == [3, 3]


def test_stray_files_are_skipped_with_a_warning(image_root, caplog):
    (image_root / "train" / "cat" / "notes.txt").write_text("not an image")
    (image_root / "train" / "cat" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (image_root / "train" / "cat" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING, logger="mindresnet.data"):
        dataset, _ = create_dataset_folder(image_root, usage="train", image_size=32, batch_size=12,
                                           drop_remainder=False)
    assert "notes.txt" in caplog.text and "broken.jpg" in caplog.text and ".DS_Store" not in caplog.text
    assert collect(dataset)[0].shape[0] == 12


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        create_dataset_folder(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "train") in str(info.value)


def test_no_classes(tmp_path):
    (tmp_path / "root" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders") as info:
        create_dataset_folder(tmp_path / "root")
    assert str(tmp_path / "root" / "train") in str(info.value)


def test_one_class_is_refused_naming_the_folder(tmp_path):
    save_image(tmp_path / "root" / "train" / "cat" / "a.png", "RGB", seed=0)
    for usage in ("train", "val"):
        with pytest.raises(DataError, match="one class folder \\(cat\\): a classifier needs at least two") as info:
            create_dataset_folder(tmp_path / "root", usage=usage, class_indices_path=tmp_path / "ci.json")
        assert str(tmp_path / "root" / "train") in str(info.value)
    assert not (tmp_path / "ci.json").exists()


def test_empty_class(image_root):
    empty = image_root / "train" / "fish"
    empty.mkdir()
    (empty / "readme.txt").write_text("only text here")
    with pytest.raises(DataError, match="holds no readable image") as info:
        create_dataset_folder(image_root, usage="train")
    assert str(empty) in str(info.value)


def test_val_class_unknown_to_train(image_root):
    save_image(image_root / "val" / "fish" / "a.png", "RGB", seed=0)
    with pytest.raises(DataError, match="fish"):
        create_dataset_folder(image_root, usage="val")


def test_missing_val_split(image_root):
    for path in sorted((image_root / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (image_root / "val").rmdir()
    with pytest.raises(DataError, match="does not exist") as info:
        create_dataset_folder(image_root, usage="val")
    assert str(image_root / "val") in str(info.value)
