"""mindresnet.report: the evaluation report: scores, confusion matrix, per-class rows, JSON, flip TTA."""
from __future__ import annotations

import json
import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import dataset as ds

from conftest import CLASS_NAMES, SAMPLE, batch, small_resnet
from mindresnet.metrics import calibration
from mindresnet.report import EvalReport, confusion_matrix, evaluate_model, format_report
from mindresnet.tools.eval_data import build_eval_dataset


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


def test_flip_tta_averages_the_image_and_its_mirror():
    net = small_resnet()
    images, labels = batch(4)
    pipeline = ds.NumpySlicesDataset((images.asnumpy(), labels.asnumpy()), ["image", "label"], shuffle=False).batch(4)
    plain = evaluate_model(net, pipeline, ["a", "b", "c"])
    flipped = evaluate_model(net, pipeline, ["a", "b", "c"], tta="flip")
    net.set_train(False)
    expected = (net(images).asnumpy() + net(ms.Tensor(images.asnumpy()[..., ::-1].copy())).asnumpy()) / 2
    probs = np.exp(expected - expected.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    loss = -np.log(probs[np.arange(4), labels.asnumpy()]).mean()
    assert flipped.loss == pytest.approx(loss, rel=1e-4)
    assert flipped.loss != pytest.approx(plain.loss, rel=1e-4)
