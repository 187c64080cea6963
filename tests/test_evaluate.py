"""mindresnet.evaluate and the checkpoint loading it shares: scores, confusion matrix, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from conftest import CLASS_NAMES
from mindresnet.tools import evaluate
from mindresnet.report import EvalReport, RELIABILITY_PNG, confusion_matrix, evaluate_model, format_report
from mindresnet.checkpoint import read_checkpoint, save_checkpoint
from mindresnet.data import DataError
from mindresnet.data.constants import RECORD_BYTES
from mindresnet.metrics import calibration
from mindresnet.tools.eval_data import build_eval_dataset, load_trained_model

SAMPLE = 64  # test images evaluated: enough for every tool, fast on 2 cores


@pytest.fixture(scope="module")
def sample_dir(real_subset, tmp_path_factory):
    """The first 64 test records of the real subset, as their own CIFAR-10 folder."""
    folder = tmp_path_factory.mktemp("sample") / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes((real_subset / "test_batch.bin").read_bytes()[:SAMPLE * RECORD_BYTES])
    (folder / "batches.meta.txt").write_bytes((real_subset / "batches.meta.txt").read_bytes())
    return folder


@pytest.fixture(scope="module")
def model(trained_ckpt):
    return load_trained_model(trained_ckpt)


def test_load_trained_model_reads_metadata(model):
    net, meta = model
    assert (net.arch, meta.arch, meta.num_classes, meta.stem, meta.image_size) == \
        ("resnet18", "resnet18", 10, "cifar", 32)
    assert meta.class_names == CLASS_NAMES and meta.class_names_from == "metadata"
    assert meta.dataset == "cifar10" and len(meta.mean) == len(meta.std) == 3
    assert not net.training


def test_load_trained_model_takes_every_parameter_from_the_checkpoint(model, trained_ckpt):
    # The net is built without random initialisation, so each value must come from the file.
    net, _ = model
    stored, _ = read_checkpoint(trained_ckpt)
    for param in net.get_parameters():
        np.testing.assert_array_equal(param.asnumpy(), stored[param.name].asnumpy(), err_msg=param.name)


def test_confusion_matrix_counts_pairs():
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_evaluate_model_on_real_images(model, sample_dir):
    net, meta = model
    dataset, names = build_eval_dataset(meta, sample_dir, batch_size=32)
    report = evaluate_model(net, dataset, names)
    assert report.count == SAMPLE and report.confusion.sum() == SAMPLE
    assert report.accuracy == pytest.approx(np.trace(report.confusion) / SAMPLE)
    assert report.accuracy <= report.top5 <= 1 and math.isfinite(report.loss)
    rows = report.per_class()
    assert [row["class"] for row in rows] == CLASS_NAMES
    assert sum(row["images"] for row in rows) == SAMPLE
    text = format_report(report)
    assert "top-5" in text and all(name in text for name in CLASS_NAMES)


def test_report_of_an_absent_class_is_null_in_json():
    cal = calibration(np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0]]), np.array([0, 1]))
    report = EvalReport(0.5, 1.0, 0.7, 2, ["a", "b", "c"], np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]]), cal)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["per_class"][0]["accuracy"] == 0.5 and data["per_class"][1]["accuracy"] is None
    assert data["per_class"][0]["precision"] == 1.0 and data["per_class"][1]["precision"] == 0.0
    assert data["macro_avg"]["recall"] == 0.5  # only class a has images
    assert data["ece"] == pytest.approx(cal.ece)
    lines = format_report(report).splitlines()
    assert "-" in next(line for line in lines if line.startswith("c "))
    assert lines[-2].startswith("macro avg") and lines[-1].startswith("weighted avg")


def test_evaluate_cli_json_and_confusion_png(trained_ckpt, sample_dir, tmp_path, capsys):
    png = tmp_path / "cm.png"
    code = evaluate.main(["--ckpt", str(trained_ckpt), "--data-dir", str(sample_dir), "--batch-size", "32",
                          "--json", "--confusion", str(png)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["count"] == SAMPLE and 0 <= out["accuracy"] <= out["top5"] <= 1
    assert len(out["per_class"]) == 10 and np.array(out["confusion_matrix"]).sum() == SAMPLE
    assert out["confusion_png"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(out["macro_avg"]) == set(out["weighted_avg"]) == {"precision", "recall", "f1"}
    assert 0 <= out["ece"] <= 1 and sum(out["calibration"]["bin_counts"]) == SAMPLE
    assert {"precision", "recall", "f1"} <= set(out["per_class"][0])
    reliability = tmp_path / RELIABILITY_PNG  # beside the confusion matrix
    assert out["reliability_png"] == str(reliability) and reliability.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", RELIABILITY_PNG]  # no temporary file


def test_evaluate_cli_missing_data_dir_is_a_clear_error(trained_ckpt, tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    code = evaluate.main(["--ckpt", str(trained_ckpt), "--data-dir", str(missing), "--confusion", ""])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and str(missing) in err and "Traceback" not in err


def test_eval_dataset_with_other_classes_is_refused(model, sample_dir):
    _, meta = model
    other = meta.replace(class_names=[f"c{i}" for i in range(10)])
    with pytest.raises(DataError, match="trained on"):
        build_eval_dataset(other, sample_dir, batch_size=32)


def test_folder_checkpoint_evaluates_the_val_split(trained_ckpt, real_subset, tmp_path, capsys):
    raw = (real_subset / "test_batch.bin").read_bytes()[:SAMPLE * RECORD_BYTES]
    records = np.frombuffer(raw, np.uint8).reshape(SAMPLE, RECORD_BYTES)
    root = tmp_path / "photos"
    first_of_class = {int(label): index for index, label in reversed(list(enumerate(records[:, 0])))}
    for split, indices in (("train", sorted(first_of_class.values())), ("val", range(20))):
        for index in indices:
            folder = root / split / CLASS_NAMES[records[index, 0]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(records[index, 1:].reshape(3, 32, 32).transpose(1, 2, 0)).resize((48, 40)).save(
                folder / f"{index}.png")
    params, meta = read_checkpoint(trained_ckpt)
    ckpt = save_checkpoint(list(params.values()), tmp_path / "folder.ckpt", meta.replace(dataset="folder"))
    code = evaluate.main(["--ckpt", str(ckpt), "--data-dir", str(root), "--json", "--confusion", ""])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["count"] == 20


def test_report_is_printed_before_the_figures_are_written(trained_ckpt, sample_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = evaluate.main(["--ckpt", str(trained_ckpt), "--data-dir", str(sample_dir), "--batch-size", "32",
                          "--confusion", str(blocker / "cm.png")])
    captured = capsys.readouterr()
    assert code == 1 and "error: " in captured.err
    assert "weighted avg" in captured.out and "ECE" in captured.out


def test_training_run_ends_with_the_full_test_report(tiny_cifar, tmp_path, caplog):
    from mindresnet.training.config import TrainConfig
    from mindresnet.training.run import TEST_REPORT, fit

    ckpt = tmp_path / "ckpt"
    with caplog.at_level("INFO", logger="mindresnet.training"):
        result = fit(TrainConfig(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(tiny_cifar),
                                 download=False, epochs=1, batch_size=8, max_steps_per_epoch=1, optimizer="sgd",
                                 workers=1, val_split=0.2, ckpt_dir=str(ckpt)))
    report = json.loads((ckpt / TEST_REPORT).read_text())
    assert report["count"] == 20 and {"precision", "recall", "f1"} <= set(report["per_class"][0])
    assert result.test["macro_f1"] == pytest.approx(report["macro_avg"]["f1"])
    assert result.test["ece"] == pytest.approx(report["ece"])
    assert "weighted avg" in caplog.text
    for png in ("test_confusion_matrix.png", f"test_{RELIABILITY_PNG}"):
        assert (ckpt / png).read_bytes()[:4] == b"\x89PNG"
