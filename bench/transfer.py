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

Usage:
  python bench/transfer.py                           # budget 60 s, seeds 1 2, both sides
  python bench/transfer.py --budget 30 --pretrain-epochs 4 --no-torch
Prints the CPU line of each side, one row per run and a markdown table (README "Fine-tuning").
The pretrained checkpoint is cached in ``--work-dir`` (its pretraining time is reported, not counted).
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402
from mindspore import dataset as ds  # noqa: E402

from mindresnet import engine, finetune  # noqa: E402  (caps oneDNN for MindSpore, see cpu_isa.py)
from mindresnet.checkpoint import save_checkpoint  # noqa: E402
from mindresnet.models import create_model  # noqa: E402
from mindresnet.runtime import setup_context  # noqa: E402
from sides import cpu_line, mindspore_side, torch_env  # noqa: E402
from transfer_common import (BATCH, MOMENTUM, RECIPES, WEIGHT_DECAY, augment, batches, cosine,  # noqa: E402
                             epochs_in, normalise, result_line, split, table)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-bin"


def to_int32(labels: np.ndarray) -> ms.Tensor:
    return ms.Tensor(labels.astype(np.int32))


def train_epochs(net, lr: float, epochs: int, data, seed: int, layer_decay: float = 1.0) -> List[float]:
    """Train every layer of ``net`` for ``epochs`` (cosine from ``lr``), crop + flip batches; return each
    epoch's seconds (the first includes graph compilation)."""
    x, y = data
    rng = np.random.default_rng(seed)
    steps = len(x) // BATCH
    optimizer = engine.build_optimizer(net.trainable_params(), "sgd", cosine(lr, epochs * steps), MOMENTUM,
                                       WEIGHT_DECAY, lr_scale=lambda name: finetune.lr_scale(name, layer_decay))
    step = engine.build_train_step(net, engine.build_loss(), optimizer)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for index in batches(len(x), rng):
            step(ms.Tensor(normalise(augment(x[index], rng))), to_int32(y[index]))
        seconds.append(time.perf_counter() - start)
    return seconds


def accuracy(net, data) -> float:
    """Top-1 of ``net`` (inference mode) on ``data``."""
    net.set_train(False)
    x, y = data
    predictions = [net(ms.Tensor(normalise(x[i:i + 250]))).asnumpy().argmax(1) for i in range(0, len(x), 250)]
    return float((np.concatenate(predictions) == y).mean())


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
               timing: Tuple[float, float]) -> Dict:
    """Train one recipe within ``budget`` seconds; return its result."""
    recipe = RECIPES[name]
    ms.set_seed(seed)
    start = time.perf_counter()
    net = create_model("resnet18", num_classes=5, stem="cifar",
                       pretrained=str(pretrained) if recipe["init"] == "pretrained" else False)
    epochs = []
    if recipe.get("head_epochs"):
        x, y = data["target"]
        pipeline = ds.NumpySlicesDataset((normalise(x), y.astype(np.int32)), ["image", "label"],
                                         shuffle=False).batch(250)
        features, labels = finetune.extract_features(net, pipeline)
        steps = -(-len(features) // BATCH)
        optimizer = engine.build_optimizer(net.fc.trainable_params(), "sgd",
                                           cosine(recipe["head_lr"], recipe["head_epochs"] * steps),
                                           MOMENTUM, WEIGHT_DECAY)
        trainer = finetune.HeadTrainer(net, optimizer, engine.build_loss(), BATCH, seed)
        head_seconds = [trainer.run_epoch(features, labels)[1] for _ in range(recipe["head_epochs"])]
        per_head_epoch = float(np.median(head_seconds))
        print(f"{name}: head epoch {per_head_epoch * 1000:.1f} ms (median), full fine-tune epoch "
              f"{timing[1]:.2f} s: {timing[1] / per_head_epoch:.0f}x faster per epoch")
        epochs.append(f"{recipe['head_epochs']} head")
    if recipe.get("full", True):
        compile_seconds, per_epoch = timing
        full_epochs = epochs_in(budget - (time.perf_counter() - start) - compile_seconds, per_epoch)
        train_epochs(net, recipe["lr"], full_epochs, data["target"], seed, recipe.get("layer_decay", 1.0))
        epochs.append(f"{full_epochs} full")
    seconds = time.perf_counter() - start
    return {"side": "mindresnet", "recipe": name, "seed": seed, "accuracy": accuracy(net, data["target_test"]),
            "seconds": seconds, "epochs": " + ".join(epochs)}


def run_torch(args, pretrained: Path, timing_budget: float) -> List[Dict]:
    """The PyTorch twin in its own process (no oneDNN cap); its RESULT lines."""
    command = [args.torch_python, str(BENCH / "transfer_torch.py"), "--data-dir", str(args.data_dir),
               "--weights", str(pretrained.with_suffix(".npz")), "--budget", str(timing_budget),
               "--per-class", str(args.per_class), "--seeds", *map(str, args.seeds), "--recipes", *args.recipes]
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
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch twin")
    parser.add_argument("--torch-python", default=sys.executable)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    setup_context("CPU", "graph")
    print(cpu_line())
    print("mindresnet side:", mindspore_side())
    data = split(args.data_dir, args.per_class)
    print(f"source {len(data['source'][0])} images (classes 0-4), target {len(data['target'][0])} train / "
          f"{len(data['target_test'][0])} test images (classes 5-9), budget {args.budget:.0f} s per run")
    pretrained = args.work_dir / f"resnet18-cifar-source-e{args.pretrain_epochs}.ckpt"
    seconds = pretrain(data["source"], args.pretrain_epochs, 0, pretrained)
    source_acc = accuracy(create_model("resnet18", num_classes=5, stem="cifar", pretrained=str(pretrained)),
                          data["source_test"])
    print(f"pretrained {pretrained} ({args.pretrain_epochs} epochs{f', {seconds:.0f} s' if seconds else ', cached'}): "
          f"{source_acc:.3f} on the source classes' test images")
    timing = epoch_seconds(pretrained, data["target"])
    print(f"full fine-tune epoch {timing[1]:.2f} s, compile overhead {timing[0]:.1f} s")
    results = []
    for seed in args.seeds:
        for name in args.recipes:
            result = run_recipe(name, pretrained, data, seed, args.budget, timing)
            print(result_line(**result).replace("RESULT ", ""), flush=True)
            results.append(result)
    if not args.no_torch:
        results += run_torch(args, pretrained, args.budget)
    print("\n" + table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
