"""Evaluate a trained checkpoint: top-1/top-5 accuracy, loss, precision/recall/F1 per class with
their macro and weighted averages, calibration error, confusion matrix and reliability diagram.

``python -m mindresnet.evaluate --ckpt ckpt/resnet50-best.ckpt --data-dir datasets-cifar10-bin``
reads the model and the dataset kind from the checkpoint's metadata (cifar10: test split;
folder: val split), prints a report (``--json``: machine-readable), then saves the confusion
matrix and, beside it, the reliability diagram.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mindspore import nn, ops

from mindresnet import engine
from mindresnet.metrics import Calibration, averages, calibration, plot_reliability, precision_recall_f1
from mindresnet.fileio import save_figure, write_text
from mindresnet.cli import run_cli
from mindresnet.cli.args import DEFAULT_CKPT, add_data_args, add_model_args, model_from_args
from mindresnet.trained import build_eval_dataset

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
    logits, labels = engine.collect_logits(with_tta(net, tta), dataset)
    scores = engine.classification_metrics(logits, labels)
    matrix = confusion_matrix(labels, logits.argmax(axis=1), len(class_names))
    probabilities = engine.softmax(logits)
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


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mindresnet.evaluate`` command line."""
    parser = argparse.ArgumentParser(prog="python -m mindresnet.evaluate", description=__doc__.split("\n")[0])
    add_model_args(parser, ckpt_default=DEFAULT_CKPT)
    add_data_args(parser, batch_size=256)
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--tta", choices=TTA_MODES, default=None,
                        help="test-time augmentation: flip averages each image's and its mirror's logits")
    parser.add_argument("--confusion", default="confusion_matrix.png",
                        help="confusion-matrix PNG to write (default: confusion_matrix.png; '' to skip)")
    parser.add_argument("--reliability", default=None,
                        help=f"reliability-diagram PNG to write (default: {RELIABILITY_PNG} beside the confusion "
                             "matrix, none without it; '' to skip)")
    parser.add_argument("--save-predictions", metavar="FILE.csv",
                        help="write one row per image, in dataset order: index, true class, predicted class, "
                             "its probability")
    return parser


def figure_paths(confusion: Optional[str], reliability: Optional[str]) -> Tuple[Optional[Path], Optional[Path]]:
    """(confusion-matrix PNG, reliability-diagram PNG) to write; '' skips one; an unset reliability
    path lies beside the confusion matrix, and is skipped with it."""
    if reliability is None:
        reliability = str(Path(confusion).parent / RELIABILITY_PNG) if confusion else ""
    return (Path(confusion) if confusion else None), (Path(reliability) if reliability else None)


def save_figures(report: EvalReport, confusion: Optional[Path], reliability: Optional[Path], title: str) -> None:
    """Write the confusion matrix and the reliability diagram of ``report`` (None: skip that one)."""
    if confusion is not None:
        plot_confusion_matrix(report.confusion, report.class_names, confusion,
                              title=f"{title}: top-1 {report.accuracy:.3f}")
    if reliability is not None:
        plot_reliability(report.calibration, reliability, title=title)


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.ckpt`` on ``args.data_dir``; print the report, then write its figures."""
    net, meta = model_from_args(args)
    dataset, class_names = build_eval_dataset(meta, args.data_dir, args.batch_size, args.workers, args.dataset)
    report = evaluate_model(net, dataset, class_names, tta=args.tta)
    confusion, reliability = figure_paths(args.confusion, args.reliability)
    if args.json:
        print(json.dumps({"checkpoint": str(args.ckpt), "arch": meta.arch, **report.to_dict(),
                          "confusion_png": str(confusion) if confusion else None,
                          "reliability_png": str(reliability) if reliability else None}), flush=True)
    else:
        print(format_report(report, title=f"{args.ckpt} ({meta.arch}) on {args.data_dir}"), flush=True)
    save_figures(report, confusion, reliability, title=f"{meta.arch} on {args.data_dir}")
    if args.save_predictions:
        write_text(args.save_predictions, predictions_csv(report))
    if not args.json:
        for name, path in (("confusion matrix", confusion), ("reliability diagram", reliability)):
            if path is not None:
                print(f"{name}: {path}")
        if args.save_predictions:
            print(f"predictions: {args.save_predictions}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
