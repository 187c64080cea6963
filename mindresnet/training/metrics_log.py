"""Per-epoch metrics of a training run: ``metrics.csv`` and ``training_curves.png``, written atomically.

``accuracy``, ``top5`` and ``eval_loss`` are scores on the split named in ``eval_split`` (the one that
picks the best checkpoint); ``test_*``, on the last row only, are the best checkpoint's test scores
when the run held a test split apart.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Union

from mindresnet.fileio import atomic_path, save_figure

COLUMNS = ["epoch", "loss", "accuracy", "top5", "eval_loss", "eval_split", "lr", "lr_stem", "seconds", "images_per_s",
           "test_accuracy", "test_top5", "test_loss"]
TEXT_COLUMNS = ("eval_split",)


def read_metrics(path: Path) -> List[Dict[str, Union[float, str]]]:
    """Rows of a metrics.csv (empty when the file does not exist); empty numeric cells read as NaN."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: v if k in TEXT_COLUMNS else float(v) if v not in ("", None) else float("nan")
                 for k, v in row.items() if not (k in TEXT_COLUMNS and not v)}
                for row in csv.DictReader(handle)]


def write_metrics(rows: List[Dict[str, float]], path: Path) -> None:
    """Write all rows to ``path`` (temp file + rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in COLUMNS})


def plot_training_curves(rows: List[Dict[str, float]], path: Path) -> None:
    """Save loss and accuracy per epoch as a two-panel PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    split = next((r["eval_split"] for r in reversed(rows) if "eval_split" in r), "eval")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["loss"] for r in rows], marker="o", label="train loss")
    ax_loss.plot(epochs, [r.get("eval_loss", float("nan")) for r in rows], marker="o", label=f"{split} loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_acc.plot(epochs, [r.get("accuracy", float("nan")) for r in rows], marker="o", color="tab:green")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel(f"{split} top-1 accuracy")
    ax_acc.set_ylim(0, 1)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
