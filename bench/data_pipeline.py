"""Images/s of the CIFAR-10 training pipeline (with augmentation) against what training consumes.

Usage:
    python bench/data_pipeline.py [--data-dir DIR] [--sizes 32 224] [--epochs 2]
                                  [--train-images-per-s 32=103 224=2.9]

For each image size: builds the train pipeline on the real subset, takes one warm-up batch, then
times ``--epochs`` epochs and prints pipeline images/s, the training rate it must feed, their
ratio, and PASS when the pipeline is at least ``--margin`` (3x) faster.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MINDRESNET_SUBSET", REPO.parent / "shared" / "data" / "cifar10-subset"))
# ResNet-50 training rates on the 2-core CPU box (graph mode, ImageNet stem), measured by
# bench/throughput.py: 32x32 batch 128 and 224x224 batch 8 (bench/results.md).
DEFAULT_TRAIN_RATES = {32: 103.0, 224: 2.9}
RATE_SOURCE = "ResNet-50 train rates from bench/results.md"


def parse_rates(items: List[str]) -> Dict[int, float]:
    """``["32=103", "224=2.9"]`` -> ``{32: 103.0, 224: 2.9}``, on top of the defaults."""
    rates = dict(DEFAULT_TRAIN_RATES)
    for item in items:
        size, sep, rate = item.partition("=")
        if not sep:
            raise SystemExit(f"--train-images-per-s takes SIZE=RATE pairs, got {item!r}")
        rates[int(size)] = float(rate)
    return rates


def measure(data_dir: Path, image_size: int, batch_size: int, epochs: int, workers) -> tuple:
    """Pipeline images/s over ``epochs`` epochs after one warm-up batch; returns (images, seconds)."""
    from mindresnet.data import create_dataset_cifar10

    dataset, _ = create_dataset_cifar10(data_dir, usage="train", image_size=image_size, batch_size=batch_size,
                                        workers=workers)
    iterator = dataset.create_tuple_iterator(output_numpy=True, num_epochs=epochs + 1)
    next(iterator)  # warm-up: threads started, first batch ready
    start = time.perf_counter()
    images = 0
    for _ in range(epochs):
        for image, _label in iterator:
            images += image.shape[0]
    return images, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="CIFAR-10 binary folder or its parent")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--train-images-per-s", nargs="*", default=[], metavar="SIZE=RATE",
                        help=f"training consumption per image size; defaults {DEFAULT_TRAIN_RATES} ({RATE_SOURCE})")
    parser.add_argument("--margin", type=float, default=3.0, help="required pipeline/training ratio")
    args = parser.parse_args(argv)
    rates = parse_rates(args.train_images_per_s)
    from mindresnet.runtime import cpu_count

    sys.path.insert(0, str(REPO / "bench"))
    from sides import cpu_line, mindspore_side

    print(f"{cpu_line()}\n{mindspore_side()}")
    print(f"data: {args.data_dir}  batch {args.batch_size}  epochs {args.epochs}  "
          f"workers {args.workers or cpu_count()} of {cpu_count()} cores")
    header = (f"{'size':>5} {'images':>7} {'seconds':>8} {'pipeline img/s':>15} {'train img/s':>12} "
              f"{'ratio':>7}  verdict")
    print(header)
    print("-" * len(header))
    failed = False
    for size in args.sizes:
        images, seconds = measure(args.data_dir, size, args.batch_size, args.epochs, args.workers)
        speed = images / seconds
        train = rates.get(size)
        if train:
            ratio = speed / train
            verdict = "PASS" if ratio >= args.margin else "FAIL"
            failed |= verdict == "FAIL"
            print(f"{size:>5} {images:>7} {seconds:>8.2f} {speed:>15.0f} {train:>12.1f} {ratio:>6.0f}x  {verdict}")
        else:
            print(f"{size:>5} {images:>7} {seconds:>8.2f} {speed:>15.0f} {'?':>12} {'?':>7}  (no training rate)")
    print(f"training rates: {', '.join(f'{s}: {r:g}' for s, r in sorted(rates.items()))} img/s "
          f"(defaults {RATE_SOURCE}; pass --train-images-per-s SIZE=RATE).")
    print(f"PASS = pipeline >= {args.margin:g}x training.")
    print("note: the pipeline is measured alone; during training it shares the cores with the model.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
