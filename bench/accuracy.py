"""Accuracy per wall-clock second of mindresnet training on the real CIFAR-10 subset.

ResNet-50 (tutorial architecture, ImageNet stem, from scratch: no pretrained weights can be
downloaded here), 32x32, 5085 training and 1017 test images of ../shared/data/cifar10-subset.

Recipes:
  reference  the recipe of the PyTorch eager anchor: batch 128, SGD Nesterov momentum 0.9,
             weight decay 5e-4, one-cycle LR peaking at 0.05, crop + flip, 10 epochs.
             Anchor (measured on this 2-core machine, PyTorch 2.13 CPU eager):
             33.8% test accuracy after 10 epochs in 485 s of training.
  tutorial   the MindSpore tutorial's recipe (batch 256, Momentum 0.9, cosine 1e-3 -> 1e-5),
             here from scratch.

Usage:
  python bench/accuracy.py                         # reference recipe, 10 epochs
  python bench/accuracy.py --recipe tutorial --epochs 5
Prints one row per epoch and a summary against the anchor.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mindresnet.config import TrainConfig  # noqa: E402
from mindresnet.train import fit  # noqa: E402

ANCHOR_ACCURACY, ANCHOR_SECONDS = 0.338, 485.0
RECIPES = {
    "reference": dict(batch_size=128, optimizer="sgd", momentum=0.9, weight_decay=5e-4, lr=0.05,
                      min_lr=0.05 / 25 / 1e4, lr_schedule="onecycle"),
    "tutorial": dict(batch_size=256, optimizer="momentum", momentum=0.9, weight_decay=0.0, lr=1e-3,
                     min_lr=1e-5, lr_schedule="cosine"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="reference")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as ckpt_dir:
        config = TrainConfig(arch=args.arch, stem=args.stem, pretrained="false", data_dir=args.data_dir,
                             download=False, epochs=args.epochs, seed=args.seed, ckpt_dir=ckpt_dir,
                             **RECIPES[args.recipe])
        start = time.perf_counter()
        result = fit(config)
        wall = time.perf_counter() - start
    print(f"\n{args.arch} ({args.stem} stem), recipe {args.recipe}, {args.epochs} epochs, "
          f"batch {config.batch_size}, data {args.data_dir}")
    print(f"{'epoch':>5} {'loss':>7} {'test acc':>8} {'train s':>8} {'cum train s':>11} {'img/s':>7}")
    cumulative = 0.0
    for row in result.history:
        cumulative += row["seconds"]
        print(f"{int(row['epoch']):>5} {row['loss']:>7.3f} {row['accuracy']:>8.3f} {row['seconds']:>8.1f} "
              f"{cumulative:>11.1f} {row['images_per_s']:>7.1f}")
    final = result.history[-1]["accuracy"]
    print(f"final test accuracy {final:.3f} (best {result.best_accuracy:.3f}); training {cumulative:.0f} s, "
          f"wall {wall:.0f} s including compile and evaluation")
    if args.recipe == "reference" and args.epochs == 10:
        verdict = "PASS" if final >= ANCHOR_ACCURACY and cumulative <= ANCHOR_SECONDS else "FAIL"
        print(f"PyTorch eager anchor: {ANCHOR_ACCURACY:.3f} in {ANCHOR_SECONDS:.0f} s of training -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
