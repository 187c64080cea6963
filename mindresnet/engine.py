"""Pieces of training and evaluation: LR schedules, optimizer, loss, the graph-mode train step, metrics."""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn


def lr_schedule(name: str, lr: float, min_lr: float, epochs: int, steps_per_epoch: int,
                warmup_epochs: float = 0.0) -> List[float]:
    """Learning rate of every step of the run.

    Args:
        name: ``cosine`` (warm-up, then cosine from ``lr`` to ``min_lr``), ``onecycle`` (linear
            rise from ``lr/25`` over ``warmup_epochs`` or 30% of the run, then cosine to ``min_lr``),
            ``step`` (x0.1 at 50% and 75% of the run) or ``constant``.
        lr: peak learning rate.
        min_lr: final learning rate of cosine and onecycle.
        epochs, steps_per_epoch: length of the run.
        warmup_epochs: epochs of linear warm-up from ``lr/25``.
    """
    total = max(1, epochs * steps_per_epoch)
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if name == "onecycle" and warmup == 0:
        warmup = int(0.3 * total)
    start = lr / 25.0
    rates = []
    for step in range(total):
        if step < warmup:
            rates.append(start + (lr - start) * step / warmup)
            continue
        progress = (step - warmup) / max(1, total - warmup)
        if name in ("cosine", "onecycle"):
            rates.append(min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress)))
        elif name == "step":
            rates.append(lr * (0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))))
        elif name == "constant":
            rates.append(lr)
        else:
            raise ValueError(f"Unknown learning-rate schedule {name!r}.")
    return rates


def build_optimizer(params: Iterable[ms.Parameter], name: str, rates: List[float], momentum: float,
                    weight_decay: float, loss_scale: float = 1.0) -> nn.Optimizer:
    """The optimizer over ``params``, following ``rates`` step by step.

    ``momentum``: ``nn.Momentum`` (the tutorial's); ``sgd``: ``nn.SGD`` with Nesterov momentum, the
    update of PyTorch's ``SGD(nesterov=True)``. (``nn.Momentum(use_nesterov=True)`` is not used: on
    CPU, MindSpore 2.10 applies plain momentum with it, see tests/test_train.py.) Weight decay skips
    BatchNorm ``gamma``/``beta``, MindSpore's default.
    """
    params, lr = list(params), ms.Tensor(np.array(rates, np.float32))
    if name == "sgd":
        return nn.SGD(params, learning_rate=lr, momentum=momentum, nesterov=True,
                      weight_decay=weight_decay, loss_scale=loss_scale)
    return nn.Momentum(params, learning_rate=lr, momentum=momentum, weight_decay=weight_decay,
                       loss_scale=loss_scale)


def build_loss(label_smoothing: float = 0.0) -> nn.Cell:
    """Mean softmax cross-entropy on integer labels."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


def build_train_step(net: nn.Cell, loss_fn: nn.Cell, optimizer: nn.Optimizer, amp: str = "O0",
                     loss_scale: float = 1024.0, small_map_gemm: bool = True) -> nn.Cell:
    """The compiled train step ``step(images, labels) -> loss`` (forward, backward, update).

    Built with MindSpore's ``amp.build_train_network``: ``O0`` is float32; ``O1``-``O3`` cast to
    float16 with a static loss scale. In graph mode the whole step compiles to one graph, and in
    data-parallel runs it averages gradients across ranks.

    On CPU with ``small_map_gemm`` (default), ``net``'s convolutions switch in place to
    :class:`~mindresnet.models.fast.SmallMapConv2d`: same parameters and results, but a matrix
    product instead of MindSpore's slow CPU kernel on 2x2 and 1x1 feature maps (ResNet-50 at
    32x32: about 2x the training throughput; see bench/README.md).
    """
    if small_map_gemm and ms.get_context("device_target") == "CPU":
        from mindresnet.models.fast import use_small_map_gemm

        use_small_map_gemm(net)
    kwargs = {}
    if amp != "O0":
        kwargs["loss_scale_manager"] = ms.amp.FixedLossScaleManager(loss_scale, drop_overflow_update=False)
    step = ms.amp.build_train_network(net, optimizer, loss_fn, level=amp, **kwargs)
    step.set_train(True)
    return step


def collect_logits(net: nn.Cell, dataset) -> Tuple[np.ndarray, np.ndarray]:
    """Run ``net`` in inference mode over ``dataset``; return (logits N x C, labels N)."""
    net.set_train(False)
    all_logits, all_labels = [], []
    for images, labels in dataset.create_tuple_iterator(num_epochs=1):
        all_logits.append(net(images).asnumpy().astype(np.float32))
        all_labels.append(labels.asnumpy())
    if not all_logits:
        raise ValueError("The evaluation dataset is empty.")
    return np.concatenate(all_logits), np.concatenate(all_labels).astype(np.int64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Top-1 and top-5 accuracy and mean cross-entropy."""
    probs = softmax(logits)
    top1 = float((logits.argmax(axis=1) == labels).mean())
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    top5 = float((topk == labels[:, None]).any(axis=1).mean())
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
    return {"accuracy": top1, "top5": top5, "loss": loss, "count": int(len(labels))}


def evaluate(net: nn.Cell, dataset) -> Dict[str, float]:
    """Top-1, top-5 and loss of ``net`` on ``dataset``."""
    return classification_metrics(*collect_logits(net, dataset))
