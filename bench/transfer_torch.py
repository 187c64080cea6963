"""The PyTorch eager twin of bench/transfer.py: the same recipes from the same pretrained weights.

Weights come from the ``.npz`` that bench/transfer.py writes beside its pretrained checkpoint,
renamed by ``torch_resnet.state_dict_from_mindspore`` (BatchNorm momentum: PyTorch's 0.1 is
MindSpore's 0.9, both the twin's defaults). Frozen phases run the backbone in ``eval()`` mode
(features computed once, as mindresnet's linear probe), layer decay uses the same multipliers.
It never imports mindresnet, whose import would cap oneDNN at AVX2 for this process too.

Usage (normally started by bench/transfer.py):
  python bench/transfer_torch.py --weights /tmp/mindresnet-transfer/resnet18-cifar-source-e8.npz
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from sides import cpu_count, cpu_line, torch_side  # noqa: E402
from torch_resnet import create_model, state_dict_from_mindspore  # noqa: E402
from transfer_common import (BATCH, MOMENTUM, RECIPES, WEIGHT_DECAY, augment, batches, cosine,  # noqa: E402
                             epochs_in, layer_scale, normalise, result_line, split)

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


def train_epochs(model, lr: float, epochs: int, data, seed: int, layer_decay: float = 1.0) -> None:
    """Train every layer for ``epochs`` (cosine from ``lr``), crop + flip batches."""
    x, y = data
    rng = np.random.default_rng(seed)
    steps = len(x) // BATCH
    rates = cosine(lr, epochs * steps)
    optimizer = optimizer_for(model.named_parameters(), lr, layer_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    step = 0
    for _ in range(epochs):
        for index in batches(len(x), rng):
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


def train_head(model, features: torch.Tensor, labels: np.ndarray, lr: float, epochs: int, seed: int) -> None:
    """Train ``model.fc`` on cached features."""
    rng = np.random.default_rng(seed)
    steps = -(-len(features) // BATCH)
    rates = cosine(lr, epochs * steps)
    optimizer = optimizer_for(model.fc.named_parameters(prefix="fc"), lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    targets = torch.from_numpy(labels)
    step = 0
    for _ in range(epochs):
        for index in batches(len(features), rng, drop_last=False):
            for group in optimizer.param_groups:
                group["lr"] = rates[step]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model.fc(features[index]), targets[index]).backward()
            optimizer.step()
            step += 1


def accuracy(model, data) -> float:
    model.eval()
    x, y = data
    with torch.no_grad():
        predictions = torch.cat([model(torch.from_numpy(normalise(x[i:i + 250]))).argmax(1)
                                 for i in range(0, len(x), 250)])
    return float((predictions.numpy() == y).mean())


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
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    print(cpu_line())
    print("pytorch side:", torch_side())
    data = split(args.data_dir, args.per_class)
    weights = dict(np.load(args.weights))
    model = build(weights, True, 0)
    print(f"pytorch: pretrained weights on the source classes' test images: {accuracy(model, data['source_test']):.3f}")
    start = time.perf_counter()
    train_epochs(model, 0.01, 1, data["target"], 0)
    per_epoch = time.perf_counter() - start
    print(f"pytorch: full fine-tune epoch {per_epoch:.2f} s")
    for seed in args.seeds:
        for name in args.recipes:
            recipe = RECIPES[name]
            start = time.perf_counter()
            model = build(weights, recipe["init"] == "pretrained", seed)
            epochs = []
            if recipe.get("head_epochs"):
                x, y = data["target"]
                train_head(model, features_of(model, x), y, recipe["head_lr"], recipe["head_epochs"], seed)
                epochs.append(f"{recipe['head_epochs']} head")
            if recipe.get("full", True):
                full_epochs = epochs_in(args.budget - (time.perf_counter() - start), per_epoch)
                train_epochs(model, recipe["lr"], full_epochs, data["target"], seed, recipe.get("layer_decay", 1.0))
                epochs.append(f"{full_epochs} full")
            seconds = time.perf_counter() - start
            print(result_line("pytorch", name, seed, accuracy(model, data["target_test"]), seconds,
                              " + ".join(epochs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
