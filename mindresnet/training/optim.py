"""Optimizers and their parameter groups: per-step rates, weight decay, layer decay, the head's scale."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn

from mindresnet.models.resnet import HEAD_GROUP, ResNet
from mindresnet.training.step import uses_composed_step

OPTIMIZERS = ("momentum", "sgd", "adamw")


def decays(name: str) -> bool:
    """Whether weight decay applies to parameter ``name``: not to BatchNorm ``gamma``/``beta`` nor biases."""
    return not name.endswith((".gamma", ".beta", ".bias"))


def parameter_groups(params: Iterable[ms.Parameter], rates: Sequence[float], weight_decay: float,
                     lr_scale: Optional[Callable[[str], float]] = None) -> List[Dict]:
    """Optimizer groups: one per (learning-rate multiplier, decays or not).

    Args:
        params: the parameters to train.
        rates: base learning rate of every step.
        weight_decay: decay of weights; BatchNorm ``gamma``/``beta`` and biases get none.
        lr_scale: multiplier of the base rates per parameter name (e.g.
            :func:`lr_scale` for layer decay); default 1 for all.

    Returns:
        MindSpore group dicts: ``params``, ``weight_decay`` and, only when the multipliers differ,
        ``lr`` (a per-step Tensor). Groups without ``lr`` share the optimizer's one table: per-group
        tables doubled the compile time of ResNet-50's train step on CPU (bench/README.md).
    """
    base = np.asarray(rates, np.float32)
    grouped: Dict[Tuple[float, bool], List[ms.Parameter]] = {}
    for param in params:
        key = (float(lr_scale(param.name)) if lr_scale else 1.0, decays(param.name))
        grouped.setdefault(key, []).append(param)
    scaled = any(scale != 1.0 for scale, _ in grouped)
    groups = []
    for (scale, decay), members in sorted(grouped.items(), key=lambda item: item[0]):
        group = {"params": members, "weight_decay": weight_decay if decay else 0.0}
        if scaled:
            group["lr"] = ms.Tensor(base * scale)
        groups.append(group)
    return groups


def build_optimizer(params: Iterable[ms.Parameter], name: str, rates: Sequence[float], momentum: float,
                    weight_decay: float, loss_scale: float = 1.0,
                    lr_scale: Optional[Callable[[str], float]] = None) -> nn.Optimizer:
    """The optimizer over ``params``, following ``rates`` (times ``lr_scale(name)``) step by step.

    ``momentum``: ``nn.Momentum`` (the tutorial's); ``sgd``: ``nn.SGD`` with Nesterov momentum, the
    update of PyTorch's ``SGD(nesterov=True)``. (``nn.Momentum(use_nesterov=True)`` is not used: on
    CPU, MindSpore 2.10 applies plain momentum with it, see tests/test_training_optim.py.) ``adamw``:
    ``nn.AdamWeightDecay`` (decoupled decay, betas 0.9/0.999); it has no ``loss_scale``, so
    ``loss_scale`` must be 1 (the train step then unscales, see :func:`build_train_step`).
    Weight decay skips BatchNorm ``gamma``/``beta`` and biases (:func:`decays`).
    """
    groups = parameter_groups(params, rates, weight_decay, lr_scale)
    lr = ms.Tensor(np.asarray(rates, np.float32))
    if name == "adamw":
        if loss_scale != 1.0:
            raise ValueError("adamw takes no loss_scale: build the train step with unscaled gradients.")
        return nn.AdamWeightDecay(groups, learning_rate=lr, beta1=0.9, beta2=0.999, eps=1e-8)
    if name == "sgd":
        return nn.SGD(groups, learning_rate=lr, momentum=momentum, nesterov=True, loss_scale=loss_scale)
    if name == "momentum":
        return nn.Momentum(groups, learning_rate=lr, momentum=momentum, loss_scale=loss_scale)
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")


def optimizer_loss_scale(name: str, amp: str, loss_scale: float, custom_step: bool) -> float:
    """The ``loss_scale`` to give :func:`build_optimizer`: the static scale when the optimizer
    unscales (MindSpore's fused path), 1 when the train step unscales itself."""
    return loss_scale if amp != "O0" and not custom_step and name != "adamw" else 1.0


def current_lr(optimizer: nn.Optimizer, param: ms.Parameter) -> float:
    """Learning rate ``optimizer`` used for ``param`` at its latest step (plateau cuts included)."""
    table = optimizer.get_lr_parameter(param).asnumpy().reshape(-1)
    step = int(optimizer.global_step.asnumpy().reshape(-1)[0])
    return float(table[min(max(step - 1, 0), len(table) - 1)])


def scale_learning_rates(optimizer: nn.Optimizer, factor: float, min_lr: float = 0.0) -> None:
    """Multiply every group's learning-rate table by ``factor`` (not below ``min_lr``), in place."""
    tables = {id(table): table for table in optimizer.get_lr_parameter(list(optimizer.parameters))}
    for table in tables.values():
        values = table.asnumpy()
        table.set_data(ms.Tensor(np.maximum(values * factor, np.minimum(values, min_lr))))


def lr_scale(name: str, layer_decay: float = 1.0, head_lr_scale: float = 1.0) -> float:
    """Learning-rate multiplier of parameter ``name``: ``layer_decay ** (head group - its group)``, times
    ``head_lr_scale`` for the head (timm's ``--layer-decay`` for a ResNet's stem, 4 stages and head)."""
    group = ResNet.param_group(name)
    scale = layer_decay ** (HEAD_GROUP - group)
    return scale * head_lr_scale if group == HEAD_GROUP else scale


def optimizer_for(net: nn.Cell, config, rates) -> nn.Optimizer:
    """The optimizer of ``config`` (a TrainConfig) over ``net``'s trainable parameters: per-step
    ``rates``, layer decay and head scale, and the loss scale its train step expects."""
    custom_step = uses_composed_step(config.optimizer, config.amp, config.grad_accum, config.clip_grad)
    return build_optimizer(
        net.trainable_params(), config.optimizer, rates, config.momentum, config.weight_decay,
        optimizer_loss_scale(config.optimizer, config.amp, config.loss_scale, custom_step),
        lr_scale=lambda name: lr_scale(name, config.layer_decay, config.head_lr_scale))


def lr_columns(optimizer: nn.Optimizer, net: nn.Cell) -> Dict[str, float]:
    """The latest learning rates of the head (``lr``) and, when it trains, the stem (``lr_stem``)."""
    columns = {"lr": current_lr(optimizer, net.get_classifier().weight)}
    if net.conv1.weight.requires_grad:
        columns["lr_stem"] = current_lr(optimizer, net.conv1.weight)
    return columns
