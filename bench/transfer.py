"""Transfer learning on real images at equal wall-clock budgets: mindresnet against its PyTorch twin.

Real ImageNet weights cannot be downloaded here, so the pretrained backbone is made the honest
way: ResNet-18 (CIFAR stem) trained from scratch on the real CIFAR-10 subset's classes 0-4
(airplane ... deer). It is then transferred to classes 5-9 (dog ... truck) with ``--per-class``
training images per class (default 100), evaluated on the subset's test images of those classes.

Recipes (bench/transfer_common.py), each given ``--budget`` seconds of training wall-clock
(model build, graph compilation, feature extraction and training count; evaluation does not):
  scratch       random initialisation, full training
  linear-probe  features computed once by the frozen backbone (eval-mode BatchNorm), then only
                the head trains (mindresnet: ``--linear-probe true``)
  fine-tune     pretrained, every layer trains from the first step (one stage)
  two-stage     head epochs on cached features, then every layer with layer decay 0.7
                (mindresnet: ``--freeze-epochs 10 --layer-decay 0.7``)
Full-network phases run the cosine schedule over the whole epochs that fit the remaining budget
(epoch time measured once per side). The PyTorch eager twin (bench/transfer_torch.py) runs the
same recipes from the same pretrained weights (converted by name) in its own process, without
mindresnet's oneDNN ISA cap. Batches are prepared in numpy the same way on both sides.

``--target imbalanced`` transfers to classes 5-9 with 100/50/25/12/6 training images instead
(bench/transfer_common.py, IMBALANCED_RECIPES; scored on the same test images) and compares the
two-stage recipe plain, with ``--class-weights balanced`` (mindresnet.data.balance's weights in the
loss of head and full epochs; the twin: ``CrossEntropyLoss(weight=...)``) and with ``--sampler
balanced`` (mindresnet's ``BalancedSampler`` draws each head and full epoch, as in mindresnet.train;
the twin: PyTorch's ``WeightedRandomSampler`` with weights 1 / images of the class, which draws the
same way). A fourth, mindresnet-only recipe takes the class-weighted
one's full-epoch LR from ``python -m mindresnet.lr_find`` (run once, on the first seed, on the
imbalanced training images written as a CIFAR-10 binary folder, with the recipe's flags; its sweep
uses mindresnet's CIFAR-10 normalisation, a slightly different std; its seconds are reported,
not charged to the budget). Every run reports macro-F1 (mindresnet.metrics on this side, the same
formula in transfer_common.scores on both; checked equal) and top-1.

Usage:
  python bench/transfer.py                           # budget 60 s, seeds 1 2, both sides
  python bench/transfer.py --budget 30 --pretrain-epochs 4 --no-torch
  python bench/transfer.py --target imbalanced --budget 40 --seeds 1 2
Prints the CPU line of each side, the load average, one row per run and a markdown table (README
"Fine-tuning"). The pretrained checkpoint is cached in ``--work-dir`` (its pretraining time is
reported, not counted).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402
from mindspore import dataset as ds  # noqa: E402

from mindresnet import metrics  # noqa: E402  (caps oneDNN for MindSpore, see cpu_isa.py)
from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer
from mindresnet.training.step import build_train_step
from mindresnet.training.features import HeadTrainer, extract_features
from mindresnet.training.optim import lr_scale
from mindresnet.checkpoint import save_checkpoint  # noqa: E402
from mindresnet.data.balance import BalancedSampler, balanced_class_weights  # noqa: E402
from mindresnet.models import create_model  # noqa: E402
from mindresnet.runtime import setup_context  # noqa: E402
from cifar_numpy import write_cifar_bin  # noqa: E402
from sides import cpu_count, cpu_line, mindspore_side, torch_env  # noqa: E402
import transfer_common  # noqa: E402
from transfer_common import (ALL_RECIPES, BATCH, IMBALANCED_COUNTS, MOMENTUM, TARGETS, WEIGHT_DECAY,  # noqa: E402
                             augment, batches, cosine, epochs_in, in_batches, normalise, recipes_for, result_line,
                             sampler_seed, split, table)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-bin"


def to_int32(labels: np.ndarray) -> ms.Tensor:
    return ms.Tensor(labels.astype(np.int32))


def train_epochs(net, lr: float, epochs: int, data, seed: int, layer_decay: float = 1.0,
                 class_weights: Optional[np.ndarray] = None, sampler: bool = False) -> List[float]:
    """Train every layer of ``net`` for ``epochs`` (cosine from ``lr``), crop + flip batches; return each
    epoch's seconds (the first includes graph compilation). ``class_weights``: weighted loss;
    ``sampler``: each epoch's rows drawn by mindresnet's ``BalancedSampler`` instead of a shuffle."""
    x, y = data
    rng = np.random.default_rng(seed)
    steps = len(x) // BATCH
    optimizer = build_optimizer(net.trainable_params(), "sgd", cosine(lr, epochs * steps), MOMENTUM,
                                WEIGHT_DECAY, lr_scale=lambda name: lr_scale(name, layer_decay))
    step = build_train_step(net, build_loss(class_weights=class_weights), optimizer)
    balanced = BalancedSampler(y) if sampler else None
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = (in_batches(balanced.epoch_order(sampler_seed(seed, epoch))) if balanced is not None
                 else batches(len(x), rng))
        for index in order:
            step(ms.Tensor(normalise(augment(x[index], rng))), to_int32(y[index]))
        seconds.append(time.perf_counter() - start)
    return seconds


def predict(net, images: np.ndarray) -> np.ndarray:
    """Predicted classes of ``net`` (inference mode)."""
    net.set_train(False)
    return np.concatenate([net(ms.Tensor(normalise(images[i:i + 250]))).asnumpy().argmax(1)
                           for i in range(0, len(images), 250)])


def accuracy(net, data) -> float:
    """Top-1 of ``net`` (inference mode) on ``data``."""
    return float((predict(net, data[0]) == data[1]).mean())


def scores(net, data, classes: int = 5) -> Dict:
    """Top-1, macro-F1 (mindresnet.metrics) and per-class recall of ``net`` on ``data``; the macro-F1 is
    checked against the twin's formula (transfer_common.scores)."""
    predicted, labels = predict(net, data[0]), data[1]
    common = transfer_common.scores(predicted, labels, classes)
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    macro = metrics.averages(metrics.precision_recall_f1(confusion))["macro"]["f1"]
    if abs(macro - common["macro_f1"]) > 1e-9:
        raise SystemExit(f"macro-F1 differs: mindresnet.metrics {macro}, transfer_common {common['macro_f1']}")
    return dict(common, macro_f1=macro)


def pretrain(data, epochs: int, seed: int, path: Path) -> float:
    """Train the source model and save it; return the seconds it took (0 when cached)."""
    if path.is_file():
        return 0.0
    ms.set_seed(seed)
    net = create_model("resnet18", num_classes=5, stem="cifar")
    start = time.perf_counter()
    train_epochs(net, 0.05, epochs, data, seed)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(net, path)
    np.savez(path.with_suffix(".npz"), **{p.name: p.asnumpy() for p in net.get_parameters()})
    return seconds


def epoch_seconds(pretrained: Path, data) -> Tuple[float, float]:
    """(graph compilation seconds, seconds of one epoch) of a full fine-tune."""
    net = create_model("resnet18", num_classes=5, stem="cifar", pretrained=str(pretrained))
    first, second = train_epochs(net, 0.01, 2, data, seed=0)
    return max(0.0, first - second), second


def run_recipe(name: str, pretrained: Path, data: Dict, seed: int, budget: float,
               timing: Tuple[float, float], found_lr: Optional[float] = None) -> Dict:
    """Train one recipe within ``budget`` seconds; return its result (``found_lr``: the LR of ``lr_find`` recipes)."""
    recipe = ALL_RECIPES[name]
    lr = found_lr if recipe.get("lr_find") else recipe.get("lr")
    ms.set_seed(seed)
    start = time.perf_counter()
    net = create_model("resnet18", num_classes=5, stem="cifar",
                       pretrained=str(pretrained) if recipe["init"] == "pretrained" else False)
    weights = balanced_class_weights(data["target"][1], 5) if recipe.get("class_weights") else None
    epochs = []
    if recipe.get("head_epochs"):
        x, y = data["target"]
        pipeline = ds.NumpySlicesDataset((normalise(x), y.astype(np.int32)), ["image", "label"],
                                         shuffle=False).batch(250)
        built = time.perf_counter()
        features, labels = extract_features(net, pipeline)
        extracted = time.perf_counter()
        steps = -(-len(features) // BATCH)
        optimizer = build_optimizer(net.fc.trainable_params(), "sgd",
                                    cosine(recipe["head_lr"], recipe["head_epochs"] * steps),
                                    MOMENTUM, WEIGHT_DECAY)
        trainer = HeadTrainer(net, optimizer, build_loss(class_weights=weights), BATCH, seed,
                              balanced=recipe.get("sampler", False))
        head_seconds = [trainer.run_epoch(features, labels)[1] for _ in range(recipe["head_epochs"])]
        per_head_epoch = float(np.median(head_seconds))
        print(f"{name}: build and load {built - start:.2f} s, features {extracted - built:.2f} s (graph compiled), "
              f"head {time.perf_counter() - extracted:.2f} s (its first epoch {head_seconds[0]:.2f} s, with the "
              f"step's compilation); head epoch {per_head_epoch * 1000:.1f} ms (median), full fine-tune epoch "
              f"{timing[1]:.2f} s: {timing[1] / per_head_epoch:.0f}x faster per epoch")
        epochs.append(f"{recipe['head_epochs']} head")
    if recipe.get("full", True):
        compile_seconds, per_epoch = timing
        full_epochs = epochs_in(budget - (time.perf_counter() - start) - compile_seconds, per_epoch)
        train_epochs(net, lr, full_epochs, data["target"], seed, recipe.get("layer_decay", 1.0), weights,
                     recipe.get("sampler", False))
        epochs.append(f"{full_epochs} full")
    seconds = time.perf_counter() - start
    return {"side": "mindresnet", "recipe": name, "seed": seed, **scores(net, data["target_test"]),
            "seconds": seconds, "epochs": " + ".join(epochs), "lr": lr}


def find_lr(args, pretrained: Path, data: Dict, recipe: Dict) -> Tuple[float, float]:
    """``python -m mindresnet.lr_find`` with ``recipe``'s full-epoch flags on the target's training images
    (written as a CIFAR-10 binary folder); returns (its valley suggestion, the sweep's seconds)."""
    folder = args.work_dir / "lr-find-target"
    source = Path(args.data_dir)
    write_cifar_bin(folder / "data_batch_1.bin", *data["target"])
    write_cifar_bin(folder / "test_batch.bin", *data["target_test"])
    (folder / "batches.meta.txt").write_bytes((source / "batches.meta.txt").read_bytes())
    command = [sys.executable, "-m", "mindresnet.lr_find", "--arch", "resnet18", "--stem", "cifar",
               "--pretrained", str(pretrained), "--num-classes", "5", "--dataset", "cifar10", "--data-dir", str(folder),
               "--no-download", "--image-size", "32", "--batch-size", str(BATCH), "--optimizer", "sgd",
               "--momentum", str(MOMENTUM), "--weight-decay", str(WEIGHT_DECAY),
               "--layer-decay", str(recipe.get("layer_decay", 1.0)), "--freeze-epochs", "0",
               "--seed", str(args.seeds[0]), "--workers", str(cpu_count()), "--steps", str(args.lr_find_steps),
               "--out-dir", str(args.work_dir / "lr_find")]
    if recipe.get("class_weights"):
        command += ["--class-weights", "balanced"]
    if recipe.get("sampler"):
        command += ["--sampler", "balanced"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    found = re.search(r"suggested --lr: (\S+) \(valley\), (\S+) \(steepest descent\).*", proc.stdout)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"mindresnet.lr_find failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    print(f"mindresnet-lr-find ({' '.join(command[3:])}): {found.group(0)}; {seconds:.1f} s (not in the budget)")
    return float(found.group(1)), seconds


def load_line() -> str:
    """The 1, 5 and 15 minute load averages (other processes on the machine skew the timings)."""
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_torch(args, pretrained: Path, timing_budget: float) -> List[Dict]:
    """The PyTorch twin in its own process (no oneDNN cap); its RESULT lines."""
    twin = [name for name in args.recipes if not ALL_RECIPES[name].get("lr_find")]
    if not twin:
        return []
    command = [args.torch_python, str(BENCH / "transfer_torch.py"), "--data-dir", str(args.data_dir),
               "--weights", str(pretrained.with_suffix(".npz")), "--budget", str(timing_budget),
               "--per-class", str(args.per_class), "--target", args.target, "--seeds", *map(str, args.seeds),
               "--recipes", *twin]
    proc = subprocess.run(command, env=torch_env(), capture_output=True, text=True, check=False)
    results = []
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            results.append(json.loads(line[len("RESULT "):]))
        else:
            print(line)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/mindresnet-transfer"))
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per recipe and seed")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--target", choices=TARGETS, default="balanced",
                        help=f"balanced: --per-class images of each of classes 5-9; imbalanced: {IMBALANCED_COUNTS}")
    parser.add_argument("--recipes", nargs="+", default=None, choices=list(ALL_RECIPES),
                        help="default: every recipe of --target")
    parser.add_argument("--lr-find-steps", type=int, default=100, help="most steps of the lr_find sweep")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch twin")
    parser.add_argument("--torch-python", default=sys.executable)
    args = parser.parse_args()
    args.recipes = args.recipes or recipes_for(args.target)
    logging.basicConfig(level=logging.WARNING)
    setup_context("CPU", "graph")
    print(cpu_line())
    print("mindresnet side:", mindspore_side())
    print(load_line(), "(start)")
    data = split(args.data_dir, args.per_class, IMBALANCED_COUNTS if args.target == "imbalanced" else None)
    counts = np.bincount(data["target"][1], minlength=5)
    print(f"source {len(data['source'][0])} images (classes 0-4), target {len(data['target'][0])} train "
          f"({'/'.join(map(str, counts))}) / {len(data['target_test'][0])} test images "
          f"({'/'.join(map(str, np.bincount(data['target_test'][1], minlength=5)))}) (classes 5-9), "
          f"budget {args.budget:.0f} s per run")
    if not np.allclose(balanced_class_weights(data["target"][1], 5),
                       transfer_common.balanced_class_weights(data["target"][1], 5)):
        raise SystemExit("class weights differ between mindresnet.data.balance and the twin's")
    pretrained = args.work_dir / f"resnet18-cifar-source-e{args.pretrain_epochs}.ckpt"
    seconds = pretrain(data["source"], args.pretrain_epochs, 0, pretrained)
    source_acc = accuracy(create_model("resnet18", num_classes=5, stem="cifar", pretrained=str(pretrained)),
                          data["source_test"])
    print(f"pretrained {pretrained} ({args.pretrain_epochs} epochs{f', {seconds:.0f} s' if seconds else ', cached'}): "
          f"{source_acc:.3f} on the source classes' test images")
    timing = epoch_seconds(pretrained, data["target"])
    print(f"full fine-tune epoch {timing[1]:.2f} s, compile overhead {timing[0]:.1f} s")
    found_lr = None
    lr_find_recipes = [name for name in args.recipes if ALL_RECIPES[name].get("lr_find")]
    if lr_find_recipes:
        found_lr, _ = find_lr(args, pretrained, data, ALL_RECIPES[lr_find_recipes[0]])
    results = []
    for seed in args.seeds:
        for name in args.recipes:
            result = run_recipe(name, pretrained, data, seed, args.budget, timing, found_lr)
            print(result_line(**result).replace("RESULT ", ""), flush=True)
            results.append(result)
    print(load_line(), "(after the mindresnet runs)")
    if not args.no_torch:
        results += run_torch(args, pretrained, args.budget)
    print(load_line(), "(end)")
    print("\n" + table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
