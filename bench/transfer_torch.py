"""The PyTorch eager twin of bench/transfer.py: the same recipes from the same pretrained weights.

Weights come from the ``.npz`` that bench/transfer.py writes beside its pretrained checkpoint,
renamed by ``torch_resnet.state_dict_from_mindspore`` (BatchNorm momentum: PyTorch's 0.1 is
MindSpore's 0.9, both the twin's defaults). Frozen phases run the backbone in ``eval()`` mode
(features computed once, as mindresnet's linear probe), layer decay uses the same multipliers.
It never imports mindresnet, whose import would cap oneDNN at AVX2 for this process too.
``--target imbalanced`` recipes use PyTorch's own tools: ``CrossEntropyLoss(weight=...)`` with
the same "balanced" weights, and ``WeightedRandomSampler`` (weight 1 / images of the row's class,
as many draws as images, with replacement) for the balanced sampler's head and full epochs.

Usage (normally started by bench/transfer.py):
  python bench/transfer_torch.py --weights /tmp/mindresnet-transfer/resnet18-cifar-source-e8.npz
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from sides import cpu_count, cpu_line, torch_side  # noqa: E402
from torch_resnet import create_model, state_dict_from_mindspore  # noqa: E402
from transfer_common import (ALL_RECIPES, BATCH, IMBALANCED_COUNTS, MOMENTUM, TARGETS, WEIGHT_DECAY,  # noqa: E402
                             augment, balanced_class_weights, batches, cosine, epochs_in, in_batches, layer_scale,
                             normalise, recipes_for, result_line, sampler_seed, scores, split)

DEFAULT_DATA = BENCH.parents[1] / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-bin"


def optimizer_for(params, lr: float, layer_decay: float = 1.0) -> torch.optim.SGD:
    """SGD Nesterov, one group per (layer multiplier, decays): no decay on BatchNorm and biases."""
    groups: Dict = {}
    for name, param in params:
        decays = param.ndim > 1
        groups.setdefault((layer_scale(name, layer_decay), decays), []).append(param)
    return torch.optim.SGD([{"params": members, "scale": scale, "weight_decay": WEIGHT_DECAY if decays else 0.0}
                            for (scale, decays), members in groups.items()],
                           lr=lr, momentum=MOMENTUM, nesterov=True)


def loss_with(weights: Optional[np.ndarray]) -> torch.nn.CrossEntropyLoss:
    return torch.nn.CrossEntropyLoss(weight=None if weights is None else torch.from_numpy(weights))


def balanced_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """One epoch of PyTorch's ``WeightedRandomSampler`` with weight 1 / (images of the row's class)."""
    counts = np.bincount(labels)
    sampler = torch.utils.data.WeightedRandomSampler(torch.from_numpy(1.0 / counts[labels]), len(labels),
                                                     replacement=True, generator=torch.Generator().manual_seed(seed))
    return np.fromiter(iter(sampler), np.int64, len(labels))


def train_epochs(model, lr: float, epochs: int, data, seed: int, layer_decay: float = 1.0,
                 class_weights: Optional[np.ndarray] = None, sampler: bool = False) -> None:
    """Train every layer for ``epochs`` (cosine from ``lr``), crop + flip batches; ``class_weights``:
    weighted loss; ``sampler``: each epoch drawn by ``WeightedRandomSampler`` instead of a shuffle."""
    x, y = data
    rng = np.random.default_rng(seed)
    steps = len(x) // BATCH
    rates = cosine(lr, epochs * steps)
    optimizer = optimizer_for(model.named_parameters(), lr, layer_decay)
    loss_fn = loss_with(class_weights)
    model.train()
    step = 0
    for epoch in range(epochs):
        order = in_batches(balanced_order(y, sampler_seed(seed, epoch))) if sampler else batches(len(x), rng)
        for index in order:
            for group in optimizer.param_groups:
                group["lr"] = rates[step] * group["scale"]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(torch.from_numpy(normalise(augment(x[index], rng)))), torch.from_numpy(y[index]))
            loss.backward()
            optimizer.step()
            step += 1


def features_of(model, images: np.ndarray) -> torch.Tensor:
    """Pooled backbone features, BatchNorm in eval mode."""
    model.eval()
    trunk = torch.nn.Sequential(model.conv1, model.norm, model.relu, model.max_pool, model.layer1, model.layer2,
                                model.layer3, model.layer4)
    with torch.no_grad():
        return torch.cat([trunk(torch.from_numpy(normalise(images[i:i + 250]))).mean((2, 3))
                          for i in range(0, len(images), 250)])


def train_head(model, features: torch.Tensor, labels: np.ndarray, lr: float, epochs: int, seed: int,
               class_weights: Optional[np.ndarray] = None, sampler: bool = False) -> None:
    """Train ``model.fc`` on cached features (a shuffle each epoch, as mindresnet's head epochs; ``sampler``:
    ``WeightedRandomSampler`` draws, as mindresnet's head epochs with ``--sampler balanced``)."""
    rng = np.random.default_rng(seed)
    steps = -(-len(features) // BATCH)
    rates = cosine(lr, epochs * steps)
    optimizer = optimizer_for(model.fc.named_parameters(prefix="fc"), lr)
    loss_fn = loss_with(class_weights)
    targets = torch.from_numpy(labels)
    step = 0
    for epoch in range(epochs):
        order = (in_batches(balanced_order(labels, sampler_seed(seed, epochs + epoch)), drop_last=False) if sampler
                 else batches(len(features), rng, drop_last=False))
        for index in order:
            for group in optimizer.param_groups:
                group["lr"] = rates[step]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model.fc(features[index]), targets[index]).backward()
            optimizer.step()
            step += 1


def predict(model, images: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(normalise(images[i:i + 250]))).argmax(1)
                          for i in range(0, len(images), 250)]).numpy()


def accuracy(model, data) -> float:
    return float((predict(model, data[0]) == data[1]).mean())


def build(weights: Dict, pretrained: bool, seed: int):
    torch.manual_seed(seed)
    model = create_model("resnet18", num_classes=5, stem="cifar")
    if pretrained:
        missing, unexpected = model.load_state_dict(state_dict_from_mindspore(weights), strict=False)
        if unexpected or any(not name.endswith("num_batches_tracked") for name in missing):
            raise SystemExit(f"pretrained weights do not match the twin: missing {missing}, unexpected {unexpected}")
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--target", choices=TARGETS, default="balanced")
    parser.add_argument("--recipes", nargs="+", default=None,
                        choices=[name for name in ALL_RECIPES if not ALL_RECIPES[name].get("lr_find")])
    args = parser.parse_args()
    args.recipes = args.recipes or recipes_for(args.target, twin=True)
    torch.set_num_threads(cpu_count())
    print(cpu_line())
    print("pytorch side:", torch_side())
    print("pytorch: load average " + " ".join(f"{value:.2f}" for value in os.getloadavg()), "(start)")
    data = split(args.data_dir, args.per_class, IMBALANCED_COUNTS if args.target == "imbalanced" else None)
    weights = dict(np.load(args.weights))
    model = build(weights, True, 0)
    print(f"pytorch: pretrained weights on the source classes' test images: {accuracy(model, data['source_test']):.3f}")
    start = time.perf_counter()
    train_epochs(model, 0.01, 1, data["target"], 0)
    per_epoch = time.perf_counter() - start
    print(f"pytorch: full fine-tune epoch {per_epoch:.2f} s")
    for seed in args.seeds:
        for name in args.recipes:
            recipe = ALL_RECIPES[name]
            start = time.perf_counter()
            model = build(weights, recipe["init"] == "pretrained", seed)
            x, y = data["target"]
            class_weights = balanced_class_weights(y, 5) if recipe.get("class_weights") else None
            epochs = []
            if recipe.get("head_epochs"):
                built = time.perf_counter()
                features = features_of(model, x)
                extracted = time.perf_counter()
                train_head(model, features, y, recipe["head_lr"], recipe["head_epochs"], seed,
                           class_weights, recipe.get("sampler", False))
                print(f"pytorch {name}: build and load {built - start:.2f} s, features {extracted - built:.2f} s, "
                      f"head {time.perf_counter() - extracted:.2f} s")
                epochs.append(f"{recipe['head_epochs']} head")
            if recipe.get("full", True):
                full_epochs = epochs_in(args.budget - (time.perf_counter() - start), per_epoch)
                train_epochs(model, recipe["lr"], full_epochs, data["target"], seed, recipe.get("layer_decay", 1.0),
                             class_weights, recipe.get("sampler", False))
                epochs.append(f"{full_epochs} full")
            seconds = time.perf_counter() - start
            print(result_line("pytorch", name, seed, seconds=seconds, epochs=" + ".join(epochs), lr=recipe.get("lr"),
                              **scores(predict(model, data["target_test"][0]), data["target_test"][1], 5)),
                  flush=True)
    print("pytorch: load average " + " ".join(f"{value:.2f}" for value in os.getloadavg()), "(end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
