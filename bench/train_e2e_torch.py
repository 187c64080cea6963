"""The PyTorch eager twin of ``scripts/run_train.sh`` for ``bench/train_e2e.py`` (benchmark only).

Usage (flags as run_train.sh's, same defaults for the ones not given):
  python bench/train_e2e_torch.py --arch resnet50 --stem imagenet --epochs 2 --batch-size 128 --lr 0.05 \
      --data-dir DIR --ckpt-dir DIR [--max-steps-per-epoch N]

Does the work ``mindresnet.train.fit`` does with its defaults, the way a PyTorch user writes it:
reads the CIFAR-10 binary files, the twin model (``bench/torch_resnet.py``) from scratch, SGD
momentum 0.9 (no Nesterov, no weight decay, as ``--optimizer momentum``), a per-step cosine LR
from ``--lr`` to 1e-5, random crop (4 pixels of zero padding) + horizontal flip, the tutorial's
normalisation, the last incomplete batch dropped; after every epoch: evaluation on the test
split (top-1, top-5, loss), the best weights saved when they improve, the last weights with the
optimizer state saved, metrics.csv and a two-panel curves PNG written. The loss is read back
every step. It never imports mindresnet (whose import would cap oneDNN at AVX2 and load
MindSpore) and prints what it runs on (``sides.torch_side``) first.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_numpy import augment, cifar_bin_files, normalise, read_cifar_bin  # noqa: E402
from sides import cpu_count, cpu_line, torch_side  # noqa: E402
from torch_resnet import create_model, train_step  # noqa: E402

MEAN = np.array((0.4914, 0.4822, 0.4465), np.float32)  # mindresnet.data.constants.CIFAR10_MEAN
STD = np.array((0.2023, 0.1994, 0.2010), np.float32)
MIN_LR = 1e-5


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> normalised float32 NCHW."""
    return torch.from_numpy(normalise(images, MEAN, STD))


def cosine_rates(lr: float, epochs: int, steps: int) -> List[float]:
    """``mindresnet.training.schedule.lr_schedule("cosine", lr, 1e-5, epochs, steps)`` (no warm-up)."""
    total = max(1, epochs * steps)
    return [MIN_LR + 0.5 * (lr - MIN_LR) * (1 + math.cos(math.pi * step / total)) for step in range(total)]


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int) -> Dict[str, float]:
    """Top-1, top-5 and mean cross-entropy on the test split."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(images[i:i + batch]) for i in range(0, len(images), batch)])
    top5 = logits.topk(5, 1).indices
    return {"accuracy": float((top5[:, 0] == labels).float().mean()),
            "top5": float((top5 == labels[:, None]).any(1).float().mean()),
            "eval_loss": float(torch.nn.functional.cross_entropy(logits, labels))}


def plot(rows: List[Dict[str, float]], path: Path) -> None:
    """Loss and accuracy per epoch as a two-panel PNG (as mindresnet's metrics_log does)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["loss"] for r in rows], marker="o", label="train loss")
    ax_loss.plot(epochs, [r["eval_loss"] for r in rows], marker="o", label="test loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["accuracy"] for r in rows], marker="o", color="tab:green")
    ax_acc.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--ckpt-dir", required=True, type=Path)
    parser.add_argument("--max-steps-per-epoch", type=int)
    args = parser.parse_args(argv)
    torch.set_num_threads(cpu_count())
    print(f"{cpu_line()}\n{torch_side()}", flush=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_x, train_y = read_cifar_bin(cifar_bin_files(args.data_dir, "data_batch_*.bin"))
    test_x, test_y = read_cifar_bin(cifar_bin_files(args.data_dir, "test_batch.bin"))
    test_inputs, test_labels = to_tensor(test_x), torch.from_numpy(test_y)
    steps = len(train_x) // args.batch_size
    if args.max_steps_per_epoch:
        steps = min(steps, args.max_steps_per_epoch)
    rates = cosine_rates(args.lr, args.epochs, steps)
    model = create_model(args.arch, 10, args.stem)
    optimizer = torch.optim.SGD(model.parameters(), lr=rates[0], momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    args.ckpt_dir.mkdir(parents=True, exist_ok=True)
    best, history = -1.0, []
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(train_x))
        start, losses = time.perf_counter(), []
        for step in range(steps):
            index = order[step * args.batch_size:(step + 1) * args.batch_size]
            inputs = to_tensor(augment(train_x[index], rng))
            labels = torch.from_numpy(train_y[index])
            losses.append(train_step(model, optimizer, loss_fn, inputs, labels, rates[epoch * steps + step]))
        seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": rates[(epoch + 1) * steps - 1],
               "seconds": seconds, "images_per_s": steps * args.batch_size / seconds}
        row.update(evaluate(model, test_inputs, test_labels, args.batch_size))
        if row["accuracy"] > best:
            best = row["accuracy"]
            torch.save(model.state_dict(), args.ckpt_dir / f"{args.arch}-best.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                    "best_accuracy": best}, args.ckpt_dir / f"{args.arch}-last.pt")
        history.append(row)
        with open(args.ckpt_dir / "metrics.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(history)
        plot(history, args.ckpt_dir / "training_curves.png")
        print(f"epoch {epoch + 1}/{args.epochs} loss {row['loss']:.4f} acc {row['accuracy']:.4f} "
              f"{seconds:.1f}s {row['images_per_s']:.1f} img/s", flush=True)
    print(f"best accuracy {best:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
