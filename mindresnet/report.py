"""The evaluation report of a model on a dataset: top-1/top-5, loss, per-class precision/recall/F1
with their averages, calibration, the confusion matrix, and its text, CSV and figures.

:func:`evaluate_model` makes it; ``python -m mindresnet.evaluate`` prints it, and a training run
with a test split apart from its selection split writes it once at the end.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mindspore import nn, ops

from mindresnet.fileio import save_figure
from mindresnet.metrics import (Calibration, averages, calibration, classification_metrics, collect_outputs,
                                plot_reliability, precision_recall_f1, softmax)

ANNOTATE_MAX_CLASSES = 20  # above this the per-cell counts become unreadable
TTA_MODES = ("flip",)
RELIABILITY_PNG = "reliability_diagram.png"


@dataclass
class EvalReport:
    """Scores of a model on a dataset."""

    accuracy: float
    top5: float
    loss: float
    count: int
    class_names: List[str]
    confusion: np.ndarray  # [true class, predicted class] -> images
    calibration: Calibration
    labels: Optional[np.ndarray] = field(default=None, repr=False)  # true class of each image, in dataset order
    probabilities: Optional[np.ndarray] = field(default=None, repr=False)  # images x classes, softmax of the logits

    def per_class(self) -> List[Dict[str, Any]]:
        """One row per class: name, images, correct, accuracy (NaN when the class has no image),
        precision, recall and F1 (see :mod:`mindresnet.metrics`)."""
        scores = precision_recall_f1(self.confusion)
        rows = []
        for index, name in enumerate(self.class_names):
            total = int(self.confusion[index].sum())
            correct = int(self.confusion[index, index])
            rows.append({"class": name, "images": total, "correct": correct,
                         "accuracy": correct / total if total else float("nan"),
                         **{key: float(scores[key][index]) for key in ("precision", "recall", "f1")}})
        return rows

    def averages(self) -> Dict[str, Dict[str, float]]:
        """``macro`` and ``weighted`` precision, recall and F1."""
        return averages(precision_recall_f1(self.confusion))

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (NaN accuracies become null)."""
        per_class = [{**row, "accuracy": None if math.isnan(row["accuracy"]) else row["accuracy"]}
                     for row in self.per_class()]
        means = self.averages()
        return {"accuracy": self.accuracy, "top5": self.top5, "loss": self.loss, "count": self.count,
                "macro_avg": means["macro"], "weighted_avg": means["weighted"], "ece": self.calibration.ece,
                "per_class": per_class, "class_names": list(self.class_names),
                "confusion_matrix": self.confusion.tolist(), "calibration": self.calibration.to_dict()}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true label, prediction) pairs as a ``num_classes`` x ``num_classes`` int64 matrix."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


class FlipAverage(nn.Cell):
    """Test-time augmentation: the mean of ``net``'s logits on the images and their mirror images."""

    def __init__(self, net: nn.Cell):
        super().__init__(auto_prefix=False)  # a prefix would rename net's parameters
        self.net = net

    def construct(self, images):
        return (self.net(images) + self.net(ops.flip(images, (3,)))) * 0.5


def with_tta(net: nn.Cell, tta: Optional[str]) -> nn.Cell:
    """``net`` wrapped for test-time augmentation ``tta`` (``flip``), or ``net`` itself for none."""
    if not tta:
        return net
    if tta == "flip":
        return FlipAverage(net)
    raise ValueError(f"--tta {tta!r} is not one of {TTA_MODES}.")


def evaluate_model(net, dataset, class_names: Sequence[str], tta: Optional[str] = None) -> EvalReport:
    """Run ``net`` over ``dataset`` and score it.

    Args:
        net: the network (switched to inference mode).
        dataset: batches of (image, label).
        class_names: names of the head's classes, in index order.
        tta: test-time augmentation: ``flip`` averages the logits of each image and its mirror.

    Returns:
        An :class:`EvalReport`.
    """
    logits, labels = collect_outputs(with_tta(net, tta), dataset)
    scores = classification_metrics(logits, labels)
    matrix = confusion_matrix(labels, logits.argmax(axis=1), len(class_names))
    probabilities = softmax(logits)
    return EvalReport(accuracy=scores["accuracy"], top5=scores["top5"], loss=scores["loss"],
                      count=scores["count"], class_names=list(class_names), confusion=matrix,
                      calibration=calibration(probabilities, labels), labels=labels, probabilities=probabilities)


def predictions_csv(report: EvalReport) -> str:
    """One row per image in dataset order: index, true class, predicted class, its probability."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "true_class", "predicted_class", "probability"])
    names = report.class_names
    for index, (label, probs) in enumerate(zip(report.labels, report.probabilities)):
        predicted = int(np.argmax(probs))
        writer.writerow([index, names[int(label)], names[predicted], f"{probs[predicted]:.8f}"])
    return out.getvalue()


def format_report(report: EvalReport, title: str = "") -> str:
    """The report as aligned text: totals, then one line per class, then the macro and weighted averages."""
    width = max(len("weighted avg"), *(len(name) for name in report.class_names))
    lines = [title] if title else []
    lines += [f"images  {report.count}", f"top-1   {report.accuracy:.4f}", f"top-5   {report.top5:.4f}",
              f"loss    {report.loss:.4f}", f"ECE     {report.calibration.ece:.4f}", "",
              f"{'class':<{width}}  images  accuracy  precision  recall      f1"]
    for row in report.per_class():
        accuracy = "-" if math.isnan(row["accuracy"]) else f"{row['accuracy']:.4f}"
        lines.append(f"{row['class']:<{width}}  {row['images']:>6}  {accuracy:>8}  {row['precision']:>9.4f}  "
                     f"{row['recall']:>6.4f}  {row['f1']:>6.4f}")
    lines.append("")
    for name, means in report.averages().items():
        label = f"{name} avg"
        lines.append(f"{label:<{width}}  {report.count:>6}  {'':>8}  {means['precision']:>9.4f}  "
                     f"{means['recall']:>6.4f}  {means['f1']:>6.4f}")
    return "\n".join(lines)


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], out: Path,
                          title: str = "Confusion matrix") -> Path:
    """Save the confusion matrix as a PNG: cells coloured by row fraction (recall), counts written in.

    Returns:
        The path written (atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    rows = confusion.sum(axis=1, keepdims=True)
    fraction = np.divide(confusion, rows, out=np.zeros(confusion.shape, dtype=float), where=rows > 0)
    size = max(5.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= ANNOTATE_MAX_CLASSES:
        for (row, col), count in np.ndenumerate(confusion):
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                    color="white" if fraction[row, col] > 0.5 else "black")
    fig.tight_layout()
    try:
        return save_figure(fig, out)
    finally:
        plt.close(fig)


def save_figures(report: EvalReport, confusion: Optional[Path], reliability: Optional[Path], title: str) -> None:
    """Write the confusion matrix and the reliability diagram of ``report`` (None: skip that one)."""
    if confusion is not None:
        plot_confusion_matrix(report.confusion, report.class_names, confusion,
                              title=f"{title}: top-1 {report.accuracy:.3f}")
    if reliability is not None:
        plot_reliability(report.calibration, reliability, title=title)
