"""The dataset factory: one table of dataset kinds, train/eval splits and their normalisation."""
from __future__ import annotations

import pytest

from mindresnet.data.constants import CIFAR10_MEAN
from mindresnet.data.preprocess import cifar10_preprocess, imagenet_preprocess
from mindresnet.data.factory import DATASETS, create_dataset
from mindresnet.errors import ConfigError

from conftest import CLASS_NAMES, collect


def test_cifar10_splits_and_normalisation(tiny_cifar):
    train = create_dataset("cifar10", tiny_cifar, "train", image_size=32, batch_size=10, shuffle=False)
    held_out = create_dataset("cifar10", tiny_cifar, "eval", image_size=32, batch_size=10)
    assert train.class_names == held_out.class_names == CLASS_NAMES
    assert train.preprocess == cifar10_preprocess(32) and train.preprocess.mean == CIFAR10_MEAN
    assert collect(train.pipeline)[0].shape[0] == 100 and collect(held_out.pipeline)[0].shape[0] == 20


def test_folder_writes_its_class_indices(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for name in ("cat", "dog"):
            folder = tmp_path / "root" / split / name
            folder.mkdir(parents=True)
            for index in range(2):
                Image.new("RGB", (40, 36), (index * 90, 20, 200)).save(folder / f"{index}.png")
    indices = tmp_path / "class_indices.json"
    train = create_dataset("folder", tmp_path / "root", "train", image_size=32, batch_size=2,
                           class_indices_path=indices)
    assert train.class_names == ["cat", "dog"] and train.preprocess == imagenet_preprocess(32)
    assert indices.is_file()
    held_out = create_dataset("folder", tmp_path / "root", "eval", image_size=32, batch_size=2)
    assert collect(held_out.pipeline)[1].tolist() == [0, 0, 1, 1]


def test_unknown_dataset_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=f"--dataset 'imagenet' is not one of {', '.join(DATASETS)}"):
        create_dataset("imagenet", tmp_path, "train", image_size=32, batch_size=2)
