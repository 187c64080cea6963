"""A grid of test images titled with the model's predictions, as in the MindSpore ResNet50 tutorial.

``python -m mindresnet.visualize`` takes the first test batch (no shuffle), de-normalises it with
the checkpoint's mean/std and titles each image ``predict:{class}``: blue when right, red (plus
``(true:{class})``) when wrong. The grid is saved as a PNG; ``--show`` also opens a window.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from mindresnet.fileio import save_figure
from mindresnet.cli import run_cli
from mindresnet.cli.args import DEFAULT_CKPT, add_data_args, add_model_args, model_from_args
from mindresnet.errors import ConfigError, DataError
from mindresnet.tools.eval_data import build_eval_dataset

RIGHT_COLOR = "blue"
WRONG_COLOR = "red"


@dataclass
class Prediction:
    """One tile of the grid, read back from the drawn figure."""

    pred: str
    true: str
    title: str
    color: str

    @property
    def correct(self) -> bool:
        return self.pred == self.true


def denormalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo ``(x/255 - mean) / std`` on an N x C x H x W batch; returns N x H x W x C in [0, 1]."""
    mean_ = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    std_ = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return np.clip(images * std_ + mean_, 0.0, 1.0).transpose(0, 2, 3, 1)


def first_batch(dataset, num: int) -> Tuple[np.ndarray, np.ndarray]:
    """The first ``num`` (image, label) pairs of ``dataset`` as numpy arrays."""
    images, labels = [], []
    for image_batch, label_batch in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
        images.append(image_batch)
        labels.append(label_batch)
        if sum(len(batch) for batch in labels) >= num:
            break
    if not images:
        raise DataError("The dataset is empty: no image to show.")
    return np.concatenate(images)[:num], np.concatenate(labels)[:num].astype(np.int64)


def grid_shape(num: int) -> Tuple[int, int]:
    """(rows, columns) of the grid: 2 x 3 for the tutorial's 6 images, near-square for more."""
    cols = min(num, max(3, math.ceil(math.sqrt(num))))
    return math.ceil(num / cols), cols


def plot_predictions(net, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                     mean: Sequence[float], std: Sequence[float], out: Optional[Path] = None,
                     show: bool = False) -> List[Prediction]:
    """Predict ``images`` with ``net`` and draw them in a grid titled with the predictions.

    Args:
        net: the network (switched to inference mode).
        images: normalised N x 3 x H x W float32 batch.
        labels: true class indices (N).
        class_names: class names in index order.
        mean, std: the normalisation the images went through ([0, 1] scale).
        out: PNG to write (atomically); not written when None.
        show: also open a window (needs a display).

    Returns:
        One :class:`Prediction` per tile, with the title text and colour as drawn.
    """
    import matplotlib

    if not show:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mindspore as ms

    net.set_train(False)
    logits = net(ms.Tensor(np.ascontiguousarray(images, np.float32))).asnumpy()
    predicted = logits.argmax(axis=1)
    pictures = denormalize(images, mean, std)
    rows, cols = grid_shape(len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.2), squeeze=False)
    tiles: List[Prediction] = []
    for ax, picture, pred, true in zip(axes.flat, pictures, predicted, labels):
        pred_name, true_name = class_names[int(pred)], class_names[int(true)]
        title = f"predict:{pred_name}"
        if pred != true:
            title += f"\n(true:{true_name})"
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, color=RIGHT_COLOR if pred == true else WRONG_COLOR, fontsize=10)
        tiles.append(Prediction(pred_name, true_name, ax.get_title(), ax.title.get_color()))
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    try:
        if out is not None:
            save_figure(fig, out)
        if show:
            plt.show()
    finally:
        plt.close(fig)
    return tiles


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mindresnet.visualize`` command line."""
    parser = argparse.ArgumentParser(prog="python -m mindresnet.visualize", description=__doc__.split("\n")[0])
    add_model_args(parser, ckpt_default=DEFAULT_CKPT)
    add_data_args(parser, batch_size=32)
    parser.add_argument("--num", type=int, default=6, help="images in the grid (default: 6, a 2 x 3 grid)")
    parser.add_argument("--out", default="predictions.png", help="PNG to write (default: predictions.png)")
    parser.add_argument("--show", action="store_true", help="also open the grid in a window")
    return parser


def run(args: argparse.Namespace) -> int:
    """Draw the first ``args.num`` test images of ``args.data_dir`` with ``args.ckpt``'s predictions."""
    if args.num < 1:
        raise ConfigError(f"--num must be at least 1, got {args.num}")
    net, meta = model_from_args(args)
    dataset, class_names = build_eval_dataset(meta, args.data_dir, min(args.batch_size, args.num), args.workers,
                                              args.dataset)
    images, labels = first_batch(dataset, args.num)
    if len(images) < args.num:
        raise ConfigError(f"--num {args.num} is more than the {len(images)} images of the held-out split of "
                          f"{args.data_dir}; pass --num {len(images)} or fewer.")
    tiles = plot_predictions(net, images, labels, class_names, meta.preprocess.mean, meta.preprocess.std, Path(args.out),
                             show=args.show)
    right = sum(tile.correct for tile in tiles)
    print(f"{right}/{len(tiles)} right; saved {args.out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
