"""``predict`` on image files agrees with ``evaluate --save-predictions`` on the same images: one
Preprocess record feeds both (#21). Untrained resnet18 models suffice: agreement, not accuracy."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import List, Tuple

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from conftest import CLASS_NAMES, write_cifar_bin
from mindresnet.tools import evaluate
from mindresnet.tools import predict
from mindresnet.checkpoint import save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.data.constants import RECORD_BYTES
from mindresnet.data.factory import get_dataset_kind
from mindresnet.models import create_model

IMAGES = 4
FOLDER_CLASSES = ["cat", "dog"]
FOLDER_SHAPES = [(40, 52), (61, 37)]  # (height, width): both resize rules do real work


def cifar_case(tmp_path: Path) -> Tuple[Path, List[Path], List[str]]:
    """A CIFAR-10 folder of IMAGES test records, and the same records as lossless PNG files."""
    data = write_cifar_bin(tmp_path / "cifar", records_per_file=2, test_records=IMAGES, files=("data_batch_1.bin",))
    raw = np.fromfile(data / "test_batch.bin", np.uint8).reshape(-1, RECORD_BYTES)
    files = []
    for index, record in enumerate(raw):
        files.append(tmp_path / f"test_{index}.png")
        Image.fromarray(record[1:].reshape(3, 32, 32).transpose(1, 2, 0)).save(files[-1])
    return data, files, CLASS_NAMES


def folder_case(tmp_path: Path) -> Tuple[Path, List[Path], List[str]]:
    """An image folder with two PNGs per class in val/, listed in the reader's order (class, then name)."""
    rng = np.random.default_rng(0)
    root, files = tmp_path / "folder", []
    for split in ("train", "val"):
        for name in FOLDER_CLASSES:
            (root / split / name).mkdir(parents=True)
            for index, shape in enumerate(FOLDER_SHAPES):
                path = root / split / name / f"{index}.png"
                Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
                if split == "val":
                    files.append(path)
    return root, files, FOLDER_CLASSES


@pytest.mark.parametrize("dataset, size", [("cifar10", 32), ("cifar10", 64), ("folder", 32), ("folder", 224)])
def test_predict_gives_evaluates_classes_and_probabilities(tmp_path, capsys, dataset, size):
    data, files, names = (cifar_case if dataset == "cifar10" else folder_case)(tmp_path)
    ms.set_seed(0)
    stem = "cifar" if size == 32 else "imagenet"
    meta = CheckpointMeta("resnet18", len(names), stem=stem, preprocess=get_dataset_kind(dataset).preprocess(size),
                          class_names=names, dataset=dataset)
    ckpt = save_checkpoint(create_model("resnet18", len(names), stem=stem), tmp_path / "m.ckpt", meta)
    rows_csv = tmp_path / "rows.csv"
    assert evaluate.main(["--ckpt", str(ckpt), "--data-dir", str(data), "--batch-size", "3", "--confusion", "",
                          "--reliability", "", "--save-predictions", str(rows_csv)]) == 0
    with open(rows_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    capsys.readouterr()
    assert predict.main([*map(str, files), "--ckpt", str(ckpt), "--topk", "1", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [row["index"] for row in rows] == [str(i) for i in range(len(files))]
    for index, (row, prediction) in enumerate(zip(rows, predictions)):
        true = CLASS_NAMES[index % 10] if dataset == "cifar10" else Path(prediction["path"]).parent.name
        assert row["true_class"] == true
        top = prediction["top"][0]
        assert top["class"] == row["predicted_class"], prediction["path"]
        assert top["probability"] == pytest.approx(float(row["probability"]), abs=1e-5), prediction["path"]
