"""The PyTorch eager twin of ``bench/accuracy.py``'s reference recipe, for seed-to-seed comparison.

Same model (``bench/torch_resnet.py``, the twin of mindresnet's ResNet-50 with the ImageNet stem
and He initialisation), same data (the real CIFAR-10 subset, read from its binary files with
mindresnet's reader), same augmentation (random crop with 4 pixels of zero padding, horizontal
flip, the tutorial's normalisation), same recipe (``RECIPES["reference"]`` of ``bench/accuracy.py``:
one-cycle LR table from ``mindresnet.training.schedule.lr_schedule`` peaking at 0.05, SGD Nesterov momentum
0.9, weight decay 5e-4, batch 128 with the last incomplete batch dropped), 10 epochs, all cores.
"train s" is the time of the epoch's training steps including batch preparation; evaluation is
not counted, as in ``bench/accuracy.py``.
Importing mindresnet's reader sets its oneDNN ISA cap (AVX2) in this process's environment; it is
removed again (``sides.uncap_torch``) before PyTorch's oneDNN reads it at its first kernel, and the
ISA PyTorch really dispatches is printed.

Usage (PyTorch from bench/requirements.txt):
  python bench/accuracy_torch.py --seeds 1 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from mindresnet.data.cifar10 import load_arrays, locate_cifar10, split_files  # noqa: E402
from mindresnet.data.constants import CIFAR10_MEAN, CIFAR10_STD  # noqa: E402
from mindresnet.training.schedule import lr_schedule  # noqa: E402
from mindresnet.runtime import cpu_count  # noqa: E402
from accuracy import RECIPES, TABLE_HEADER, seeds_summary, table_row  # noqa: E402
from cifar_numpy import augment, normalise  # noqa: E402
from sides import cpu_line, torch_side, uncap_torch  # noqa: E402
from torch_resnet import create_model, train_step  # noqa: E402

uncap_torch()  # mindresnet's import capped oneDNN at AVX2: PyTorch must not inherit it

RECIPE = RECIPES["reference"]
BATCH = RECIPE["batch_size"]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 -> normalised (N, 3, 32, 32) float32 tensor."""
    return torch.from_numpy(normalise(images, CIFAR10_MEAN, CIFAR10_STD))


def run(data_dir: str, seed: int, epochs: int) -> Tuple[float, float]:
    """Train one seed and print its per-epoch table; return (final test accuracy, training seconds)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    folder = locate_cifar10(data_dir)
    train_x, train_y = load_arrays(split_files(folder, "train"))
    test_x, test_y = load_arrays(split_files(folder, "test"))
    test_inputs, test_labels = to_tensor(test_x), torch.from_numpy(test_y.astype(np.int64))
    steps = len(train_x) // BATCH
    rates = lr_schedule(RECIPE["lr_schedule"], RECIPE["lr"], RECIPE["min_lr"], epochs, steps)
    model = create_model("resnet50", 10, "imagenet")
    optimizer = torch.optim.SGD(model.parameters(), lr=rates[0], momentum=RECIPE["momentum"], nesterov=True,
                                weight_decay=RECIPE["weight_decay"])
    loss_fn = torch.nn.CrossEntropyLoss()
    print(f"\nPyTorch {torch.__version__} eager resnet50 (imagenet stem), reference recipe, {epochs} epochs, "
          f"seed {seed}")
    print(TABLE_HEADER)
    cumulative, accuracy = 0.0, 0.0
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train_x))
        start, losses = time.perf_counter(), []
        for step in range(steps):
            index = order[step * BATCH:(step + 1) * BATCH]
            inputs = to_tensor(augment(train_x[index], rng))
            labels = torch.from_numpy(train_y[index].astype(np.int64))
            losses.append(train_step(model, optimizer, loss_fn, inputs, labels, rates[epoch * steps + step]))
        seconds = time.perf_counter() - start
        cumulative += seconds
        model.eval()
        with torch.no_grad():
            predictions = torch.cat([model(test_inputs[i:i + 256]).argmax(1) for i in range(0, len(test_inputs), 256)])
        accuracy = float((predictions == test_labels).float().mean())
        print(table_row(epoch + 1, float(np.mean(losses)), accuracy, seconds, cumulative, steps * BATCH / seconds),
              flush=True)
    return accuracy, cumulative


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    print(f"{cpu_line()}\n{torch_side()}")
    results = [run(args.data_dir, seed, args.epochs) for seed in args.seeds]
    finals = [accuracy for accuracy, _ in results]
    seconds = [train_seconds for _, train_seconds in results]
    print("\n" + seeds_summary(args.seeds, finals, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
