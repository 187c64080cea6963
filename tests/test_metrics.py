"""mindresnet.metrics: precision/recall/F1 and their averages, calibration error, reliability diagram."""
from __future__ import annotations

import numpy as np
import pytest

from mindresnet import metrics


def test_precision_recall_f1_per_class_and_averages():
    # [true, predicted]: class 0 6 images (4 right), class 1 3 images (3 right), class 2 1 image, never predicted.
    confusion = np.array([[4, 2, 0], [0, 3, 0], [1, 0, 0]])
    scores = metrics.precision_recall_f1(confusion)
    np.testing.assert_allclose(scores["precision"], [4 / 5, 3 / 5, 0.0])
    np.testing.assert_allclose(scores["recall"], [4 / 6, 1.0, 0.0])
    np.testing.assert_allclose(scores["f1"], [2 * 0.8 * (4 / 6) / (0.8 + 4 / 6), 0.75, 0.0])
    np.testing.assert_array_equal(scores["support"], [6, 3, 1])
    means = metrics.averages(scores)
    assert means["macro"]["recall"] == pytest.approx((4 / 6 + 1.0 + 0.0) / 3)
    assert means["weighted"]["recall"] == pytest.approx(7 / 10)  # weighted recall is accuracy
    assert means["weighted"]["precision"] == pytest.approx((6 * 0.8 + 3 * 0.6) / 10)


def test_macro_average_leaves_out_classes_without_images():
    means = metrics.averages(metrics.precision_recall_f1(np.array([[2, 0], [0, 0]])))
    assert means["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_calibration_error_of_known_bins():
    # Four images at confidence 0.9 of which half are right, four at 0.6 all right.
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 4)
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    cal = metrics.calibration(probs, labels, bins=10)
    assert cal.ece == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))
    assert cal.counts.sum() == 8 and cal.counts[8] == 4 and cal.counts[5] == 4
    assert cal.accuracy[8] == pytest.approx(0.5) and np.isnan(cal.accuracy[0])
    assert cal.to_dict()["bin_accuracy"][0] is None


def test_perfectly_calibrated_confidence_has_zero_error():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.calibration(probs, np.array([0, 1])).ece == 0.0


def test_reliability_diagram_is_written(tmp_path):
    cal = metrics.calibration(np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 0]))
    out = metrics.plot_reliability(cal, tmp_path / "reliability.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
