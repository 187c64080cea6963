"""Classification scores: top-1/top-5 accuracy and loss of logits, precision, recall and F1 per class
with their averages, and calibration (expected calibration error and its reliability diagram).

Conventions follow scikit-learn's ``classification_report``: a class never predicted has precision
0, one without images has recall 0 and is left out of the macro average (it has no support), and
the weighted average weights each class by its images. The expected calibration error is Guo et
al.'s ("On Calibration of Modern Neural Networks", 2017): the top-1 confidence is binned into
:data:`CALIBRATION_BINS` equal-width bins and ECE is the image-weighted mean of
``|accuracy - confidence|`` over the bins.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import mindspore as ms
import numpy as np

from mindresnet.errors import DataError
from mindresnet.fileio import save_figure
from mindresnet.kernels import frozen_weights
from mindresnet.runtime import pad_rows

CALIBRATION_BINS = 15


def collect_outputs(net, dataset) -> Tuple[np.ndarray, np.ndarray]:
    """Run ``net`` in inference mode over ``dataset``; return (outputs N x C float32, labels N int64):
    logits for evaluation, pooled features for the head stage.

    A last batch smaller than the first is padded with zeros to the first's size and the padding's
    outputs dropped (images are independent in inference): in graph mode a new batch shape would
    compile the whole network a second time (5.7 s for ResNet-50 at batch 128 on a 2-core AVX-512 EPYC)."""
    net.set_train(False)
    all_outputs, all_labels = [], []
    full = 0
    with frozen_weights():
        for images, labels in dataset.create_tuple_iterator(num_epochs=1):
            count = images.shape[0]
            full = full or count
            if count < full:
                images = ms.Tensor(pad_rows(images.asnumpy(), full))
            all_outputs.append(net(images).asnumpy()[:count].astype(np.float32))
            all_labels.append(labels.asnumpy())
    if not all_outputs:
        raise DataError("The dataset is empty: no batch to run the network on.")
    return np.concatenate(all_outputs), np.concatenate(all_labels).astype(np.int64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Top-1 and top-5 accuracy and mean cross-entropy."""
    probs = softmax(logits)
    top1 = float((logits.argmax(axis=1) == labels).mean())
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    top5 = float((topk == labels[:, None]).any(axis=1).mean())
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
    return {"accuracy": top1, "top5": top5, "loss": loss, "count": int(len(labels))}


def evaluate(net, dataset) -> Dict[str, float]:
    """Top-1, top-5 and loss of ``net`` on ``dataset``."""
    return classification_metrics(*collect_outputs(net, dataset))


def precision_recall_f1(confusion: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` and ``support`` (images) of a [true, predicted] matrix."""
    confusion = np.asarray(confusion, np.float64)
    correct = np.diag(confusion)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(correct), where=both > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def averages(scores: Dict[str, np.ndarray]) -> Dict[str, Dict[str, float]]:
    """``macro`` (unweighted mean over the classes that have images) and ``weighted`` (by images)
    precision, recall and F1 of :func:`precision_recall_f1`'s scores."""
    support = scores["support"].astype(np.float64)
    present = support > 0
    result: Dict[str, Dict[str, float]] = {"macro": {}, "weighted": {}}
    for name in ("precision", "recall", "f1"):
        values = scores[name]
        result["macro"][name] = float(values[present].mean()) if present.any() else 0.0
        result["weighted"][name] = float((values * support).sum() / support.sum()) if support.sum() else 0.0
    return result


@dataclass
class Calibration:
    """Top-1 confidence against accuracy, in equal-width confidence bins."""

    ece: float
    edges: np.ndarray  # bins + 1 edges from 0 to 1
    counts: np.ndarray  # images per bin
    accuracy: np.ndarray  # accuracy per bin (NaN where empty)
    confidence: np.ndarray  # mean top-1 probability per bin (NaN where empty)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict (empty bins as null)."""
        def listed(values: np.ndarray) -> List[Any]:
            return [None if np.isnan(value) else float(value) for value in values]

        return {"ece": self.ece, "bin_edges": self.edges.tolist(), "bin_counts": self.counts.tolist(),
                "bin_accuracy": listed(self.accuracy), "bin_confidence": listed(self.confidence)}


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> Calibration:
    """Expected calibration error of class probabilities ``probs`` (N x C) against ``labels`` (N)."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
    gaps = np.abs(np.nan_to_num(accuracy) - np.nan_to_num(mean_confidence)) * counts
    ece = float(gaps.sum() / max(1, counts.sum()))
    return Calibration(ece, edges, counts, accuracy, mean_confidence)


def plot_reliability(cal: Calibration, out: Path, title: str = "Reliability diagram") -> Path:
    """Save the reliability diagram as a PNG: accuracy per confidence bin against the diagonal.

    Returns:
        The path written (atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centers = (cal.edges[:-1] + cal.edges[1:]) / 2
    width = cal.edges[1] - cal.edges[0]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.bar(centers, np.nan_to_num(cal.accuracy), width=width, edgecolor="black", label="accuracy")
    ax.bar(centers, np.nan_to_num(cal.confidence - cal.accuracy), bottom=np.nan_to_num(cal.accuracy), width=width,
           color="tab:red", alpha=0.3, edgecolor="tab:red", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: ECE {cal.ece:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    try:
        return save_figure(fig, out)
    finally:
        plt.close(fig)
