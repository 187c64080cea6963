"""Pieces of training and evaluation: LR schedules, optimizer, loss, the graph-mode train step, metrics."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from mindresnet.errors import DataError
from mindresnet.fileio import write_text
from mindresnet.kernels import use_cpu_kernels, use_native_kernels


def lr_schedule(name: str, lr: float, min_lr: float, epochs: int, steps_per_epoch: int,
                warmup_epochs: float = 0.0) -> List[float]:
    """Learning rate of every step of the run.

    Args:
        name: ``cosine`` (warm-up, then cosine from ``lr`` to ``min_lr``, a new rate every step),
            ``cosine_epoch`` (the same cosine, one rate per epoch: MindSpore's ``nn.cosine_decay_lr``,
            the tutorial's schedule, whose last epoch stays above ``min_lr``), ``onecycle`` (linear
            rise from ``lr/25`` over ``warmup_epochs`` or 30% of the run, then cosine to ``min_lr``),
            ``step`` (x0.1 at 50% and 75% of the run), ``constant``, or ``plateau`` (constant after
            the warm-up; :class:`PlateauMonitor` lowers it when the test accuracy stops improving).
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
        if name == "cosine_epoch":
            progress = ((step - warmup) // steps_per_epoch) / max(1, -(-(total - warmup) // steps_per_epoch))
        if name in ("cosine", "cosine_epoch", "onecycle"):
            rates.append(min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress)))
        elif name == "step":
            rates.append(lr * (0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))))
        elif name in ("constant", "plateau"):
            rates.append(lr)
        else:
            raise ValueError(f"Unknown learning-rate schedule {name!r}.")
    return rates


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
            :func:`mindresnet.finetune.lr_scale` for layer decay); default 1 for all.

    Returns:
        MindSpore group dicts: ``params``, ``lr`` (a per-step Tensor) and ``weight_decay``.
    """
    base = np.asarray(rates, np.float32)
    grouped: Dict[Tuple[float, bool], List[ms.Parameter]] = {}
    for param in params:
        key = (float(lr_scale(param.name)) if lr_scale else 1.0, decays(param.name))
        grouped.setdefault(key, []).append(param)
    return [{"params": members, "lr": ms.Tensor(base * scale), "weight_decay": weight_decay if decay else 0.0}
            for (scale, decay), members in sorted(grouped.items(), key=lambda item: item[0])]


def build_optimizer(params: Iterable[ms.Parameter], name: str, rates: Sequence[float], momentum: float,
                    weight_decay: float, loss_scale: float = 1.0,
                    lr_scale: Optional[Callable[[str], float]] = None) -> nn.Optimizer:
    """The optimizer over ``params``, following ``rates`` (times ``lr_scale(name)``) step by step.

    ``momentum``: ``nn.Momentum`` (the tutorial's); ``sgd``: ``nn.SGD`` with Nesterov momentum, the
    update of PyTorch's ``SGD(nesterov=True)``. (``nn.Momentum(use_nesterov=True)`` is not used: on
    CPU, MindSpore 2.10 applies plain momentum with it, see tests/test_train.py.) ``adamw``:
    ``nn.AdamWeightDecay`` (decoupled decay, betas 0.9/0.999); it has no ``loss_scale``, so
    ``loss_scale`` must be 1 (the train step then unscales, see :func:`build_train_step`).
    Weight decay skips BatchNorm ``gamma``/``beta`` and biases (:func:`decays`).
    """
    groups = parameter_groups(params, rates, weight_decay, lr_scale)
    lr = groups[0]["lr"]
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


def build_loss(label_smoothing: float = 0.0, class_weights: Optional[Sequence[float]] = None) -> nn.Cell:
    """Mean softmax cross-entropy on integer labels or soft targets (mixup/cutmix).

    ``class_weights`` scale each class's term (PyTorch's ``weight``: with integer labels the mean
    divides by the summed weights of the batch's labels, with soft targets by the batch size).
    """
    weight = ms.Tensor(np.asarray(class_weights, np.float32)) if class_weights is not None else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def build_train_step(net: nn.Cell, loss_fn: nn.Cell, optimizer: nn.Optimizer, amp: str = "O0",
                     loss_scale: float = 1024.0, cpu_kernels: bool = True, grad_accum: int = 1,
                     clip_grad: Optional[float] = None, ema=None, steps_per_epoch: Optional[int] = None) -> nn.Cell:
    """The train step ``step(images, labels) -> loss`` (forward, backward, update).

    Plain runs use MindSpore's ``amp.build_train_network``: one compiled graph per step; ``O0`` is
    float32, ``O1``-``O3`` cast to float16 with a static loss scale; data-parallel runs average
    gradients across ranks. With ``grad_accum`` > 1, ``clip_grad`` or an optimizer without
    ``loss_scale`` (AdamW) under AMP, the step is a :class:`ComposedTrainStep` instead. With ``ema``
    (a :class:`mindresnet.finetune.EMA`), the average follows every optimizer update.

    On CPU with ``cpu_kernels`` (default), ``net``'s convolutions switch to mindresnet's CPU kernels
    (:func:`mindresnet.kernels.use_cpu_kernels`: same parameters and results, oneDNN's blocked jit
    kernels instead of MindSpore's plain-layout ones; see bench/README.md); ``False`` leaves them
    as they are. Under ``O1``-``O3`` they switch back to MindSpore's: its AMP rewrite re-parses
    ``construct`` outside its module, where the kernels' helpers are undefined.

    Args:
        optimizer: from :func:`build_optimizer`, with ``loss_scale`` from :func:`optimizer_loss_scale`.
        grad_accum: micro-batches whose mean gradient makes one update.
        clip_grad: clip the update's gradient to this global L2 norm.
        steps_per_epoch: micro-batches per epoch; an epoch's last update may average fewer.
    """
    if ms.get_context("device_target") == "CPU":
        if amp != "O0":
            use_native_kernels(net)
        elif cpu_kernels:
            use_cpu_kernels(net)
    if grad_accum > 1 or clip_grad or (amp != "O0" and isinstance(optimizer, nn.AdamWeightDecay)):
        step = ComposedTrainStep(net, loss_fn, optimizer, amp, loss_scale if amp != "O0" else 1.0,
                                 grad_accum, clip_grad, ema, steps_per_epoch)
    else:
        kwargs = {}
        if amp != "O0":
            kwargs["loss_scale_manager"] = ms.amp.FixedLossScaleManager(loss_scale, drop_overflow_update=False)
        step = ms.amp.build_train_network(net, optimizer, loss_fn, level=amp, **kwargs)
        if ema is not None:
            step = ComposedTrainStep.around(step, ema)
    step.set_train(True)
    return step


def uses_composed_step(optimizer: str, amp: str, grad_accum: int, clip_grad: Optional[float]) -> bool:
    """Whether :func:`build_train_step` unscales gradients itself for these options."""
    return grad_accum > 1 or bool(clip_grad) or (amp != "O0" and optimizer == "adamw")


def updates_per_epoch(steps_per_epoch: int, grad_accum: int) -> int:
    """Optimizer updates in an epoch of ``steps_per_epoch`` micro-batches (the last may be partial)."""
    return -(-steps_per_epoch // max(1, grad_accum))


_accumulate = ops.MultitypeFuncGraph("accumulate")


@_accumulate.register("Tensor", "Tensor", "Tensor")
def _accumulate_one(scale, total, grad):
    return ops.assign_add(total, ops.cast(grad, total.dtype) * scale)


_zero = ops.MultitypeFuncGraph("zero")


@_zero.register("Tensor")
def _zero_one(total):
    return ops.assign(total, ops.zeros_like(total))


class _ForwardBackward(nn.Cell):
    """Adds the unscaled gradient of one micro-batch to the accumulators; returns its loss."""

    def __init__(self, net_with_loss: nn.Cell, weights: ms.ParameterTuple, totals: ms.ParameterTuple,
                 loss_scale: float):
        super().__init__(auto_prefix=False)
        self.network, self.weights, self.totals = net_with_loss, weights, totals
        self.loss_scale = float(loss_scale)
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.hyper_map = ops.HyperMap()

    def construct(self, images, labels):
        loss = self.network(images, labels)
        sens = ops.ones_like(loss) * self.loss_scale
        grads = self.grad(self.network, self.weights)(images, labels, sens)
        added = self.hyper_map(ops.partial(_accumulate, ops.scalar_to_tensor(1.0 / self.loss_scale)),
                               self.totals, grads)
        return ops.depend(loss, added)


class _ApplyAccumulated(nn.Cell):
    """Averages the accumulated gradients, averages across ranks, clips, updates, zeroes the accumulators."""

    def __init__(self, optimizer: nn.Optimizer, totals: ms.ParameterTuple, clip_grad: Optional[float]):
        super().__init__(auto_prefix=False)
        self.optimizer, self.totals = optimizer, totals
        self.clip_grad = float(clip_grad) if clip_grad else 0.0
        self.hyper_map = ops.HyperMap()
        self.reducer = ops.identity
        if ms.get_auto_parallel_context("parallel_mode") in ("data_parallel", "hybrid_parallel"):
            self.reducer = nn.DistributedGradReducer(optimizer.parameters)

    def construct(self, inverse_count):
        grads = self.hyper_map(ops.partial(ops.mul, inverse_count), self.totals)
        grads = self.reducer(grads)
        if self.clip_grad > 0:
            grads = ops.clip_by_global_norm(grads, self.clip_grad)
        updated = self.optimizer(grads)
        return ops.depend(updated, self.hyper_map(_zero, ops.depend(self.totals, updated)))


class ComposedTrainStep(nn.Cell):
    """A train step composed in Python of compiled pieces: gradient accumulation, clipping, EMA.

    Like MindSpore's gradient-accumulation tutorial, the micro-batch step (forward, backward, add
    to the accumulators) and the update (average, clip, optimizer, zero) are separate graphs:
    an optimizer call under a data-dependent branch does not compile into one graph. Calling the
    cell runs one micro-batch; every ``grad_accum``-th call (and the last of an epoch) updates.
    Gradients are unscaled before clipping and before the optimizer, which gets ``loss_scale`` 1.
    """

    def __init__(self, net: Optional[nn.Cell], loss_fn: Optional[nn.Cell], optimizer: nn.Optimizer,
                 amp: str = "O0", loss_scale: float = 1.0, grad_accum: int = 1, clip_grad: Optional[float] = None,
                 ema=None, steps_per_epoch: Optional[int] = None, fused_step: Optional[nn.Cell] = None):
        super().__init__(auto_prefix=False)
        self.optimizer, self.ema = optimizer, ema
        self.grad_accum = max(1, int(grad_accum))
        self.steps_per_epoch = steps_per_epoch
        self.micro_steps, self.pending = 0, 0
        if fused_step is not None:
            self.forward_backward, self.update_step = fused_step, None
            return
        network = ms.amp.auto_mixed_precision(net, amp) if amp != "O0" else net
        net_with_loss = _WithFloatLoss(network, loss_fn)
        weights = optimizer.parameters
        self.totals = weights.clone(prefix="grad_total", init="zeros")
        self.forward_backward = _ForwardBackward(net_with_loss, weights, self.totals, loss_scale)
        self.update_step = _ApplyAccumulated(optimizer, self.totals, clip_grad)

    @classmethod
    def around(cls, fused_step: nn.Cell, ema) -> "ComposedTrainStep":
        """Wrap a one-graph step (forward, backward, update) to update ``ema`` after it."""
        return cls(None, None, fused_step.optimizer, ema=ema, fused_step=fused_step)

    def __call__(self, images, labels):  # pylint: disable=arguments-differ (Python-level, not compiled)
        loss = self.forward_backward(images, labels)
        self.micro_steps += 1
        self.pending += 1
        epoch_end = bool(self.steps_per_epoch) and self.micro_steps % self.steps_per_epoch == 0
        if self.update_step is None or self.pending == self.grad_accum or epoch_end:
            if self.update_step is not None:
                self.update_step(ms.Tensor(1.0 / self.pending, ms.float32))
            self.pending = 0
            if self.ema is not None:
                self.ema.update()
        return loss

    def resume_at(self, step: int) -> None:
        """Continue an epoch at micro-batch ``step`` (the restored accumulators hold its partial sum)."""
        self.micro_steps, self.pending = step, step % self.grad_accum


class _WithFloatLoss(nn.Cell):
    def __init__(self, network: nn.Cell, loss_fn: nn.Cell):
        super().__init__(auto_prefix=False)
        self.network, self.loss_fn = network, loss_fn

    def construct(self, images, labels):
        return self.loss_fn(ops.cast(self.network(images), ms.float32), labels)


def collect_logits(net: nn.Cell, dataset) -> Tuple[np.ndarray, np.ndarray]:
    """Run ``net`` in inference mode over ``dataset``; return (logits N x C, labels N)."""
    net.set_train(False)
    all_logits, all_labels = [], []
    for images, labels in dataset.create_tuple_iterator(num_epochs=1):
        all_logits.append(net(images).asnumpy().astype(np.float32))
        all_labels.append(labels.asnumpy())
    if not all_logits:
        raise DataError("The evaluation dataset is empty: no batch to evaluate.")
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


class PlateauMonitor:
    """Test accuracy watcher with the semantics of MindSpore's ``ReduceLROnPlateau`` and ``EarlyStopping``.

    An evaluation improves when its accuracy beats the best so far by more than ``min_delta``; after
    ``patience`` evaluations without improvement, :meth:`step` says so (and, for a plateau, waits
    ``patience`` more before saying it again: the callback's ``wait`` reset, without cooldown).

    The callbacks themselves are not used: they expect ``Model.train``'s run context (this loop
    is custom), ``ReduceLROnPlateau`` rejects per-step and per-group learning rates ("does not
    support dynamic learning rate and group learning rate"), and their state is not saved, whereas
    this monitor is replayed from ``metrics.csv`` on resume (:meth:`replay`).
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best, self.wait = -math.inf, 0

    def step(self, accuracy: float) -> bool:
        """Record an epoch's accuracy; True when ``patience`` epochs passed without improvement."""
        if accuracy > self.best + self.min_delta:
            self.best, self.wait = accuracy, 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.wait = 0
            return True
        return False

    def replay(self, accuracies: Iterable[float]) -> int:
        """Feed earlier epochs' accuracies (NaN: not evaluated, skipped); return how many triggered."""
        return sum(self.step(value) for value in accuracies if not math.isnan(value))


class AccuracyWatch:
    """What the test accuracy decides after each evaluation: plateau LR cuts and early stopping.

    Args:
        optimizer: whose learning-rate tables a plateau multiplies by ``factor`` (not below ``min_lr``).
        plateau_patience: evaluations without improvement before a cut; None: no plateau schedule.
        early_stop: evaluations without improvement before stopping; None: never stop early.
    """

    def __init__(self, optimizer: nn.Optimizer, plateau_patience: Optional[int], early_stop: Optional[int],
                 min_lr: float = 0.0, factor: float = 0.1):
        self.optimizer, self.min_lr, self.factor = optimizer, min_lr, factor
        self.plateau = PlateauMonitor(plateau_patience) if plateau_patience else None
        self.early = PlateauMonitor(early_stop) if early_stop else None

    def observe(self, accuracy: float) -> bool:
        """Record one evaluation; cut the LR on a plateau; True when training should stop."""
        if self.plateau is not None and self.plateau.step(accuracy):
            scale_learning_rates(self.optimizer, self.factor, self.min_lr)
        return self.early is not None and self.early.step(accuracy)

    def replay(self, accuracies: Iterable[float]) -> None:
        """Bring a resumed run to the state its earlier evaluations left (NaN: not evaluated)."""
        for accuracy in accuracies:
            if not math.isnan(accuracy):
                self.observe(accuracy)


class TopKCheckpoints:
    """The ``k`` best checkpoints of a run, ranked: ``<arch>-top1.ckpt`` (best) ... ``<arch>-top<k>.ckpt``.

    Their accuracies, best first, are kept in ``<arch>-top.json`` so the ranking survives a resume.
    """

    def __init__(self, folder: Path, arch: str, k: int):
        self.folder, self.arch, self.k = Path(folder), arch, int(k)
        self.ranking = self.folder / f"{arch}-top.json"

    def path(self, rank: int) -> Path:
        """File of rank ``rank`` (1 = best)."""
        return self.folder / f"{self.arch}-top{rank}.ckpt"

    def scores(self) -> List[float]:
        """Accuracies of the kept files, best first."""
        if not self.ranking.is_file():
            return []
        return [float(score) for score in json.loads(self.ranking.read_text())][:self.k]

    def offer(self, accuracy: float, save: Callable[[Path], None]) -> Optional[int]:
        """Keep a model of ``accuracy`` if it ranks in the top ``k``: shift the worse files down one
        rank and call ``save(path)`` for its own; return its rank, or None when not kept."""
        scores = self.scores()
        rank = 1 + sum(score >= accuracy for score in scores)
        if rank > self.k:
            return None
        for lower in range(min(len(scores), self.k - 1), rank - 1, -1):
            os.replace(self.path(lower), self.path(lower + 1))
        save(self.path(rank))
        scores.insert(rank - 1, float(accuracy))
        write_text(self.ranking, json.dumps(scores[:self.k]))
        return rank
