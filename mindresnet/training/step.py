"""The graph-mode train step: MindSpore's one-graph step, or a composed one (gradient accumulation,
clipping, AMP with AdamW), the weights' moving average (EMA), and the CPU kernel switch."""
from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator, Optional

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from mindresnet.kernels import use_cpu_kernels, use_native_kernels
from mindresnet.runtime import in_dumps_folder


def switch_kernels(net: nn.Cell, amp: str = "O0", cpu_kernels: bool = True) -> None:
    """The one place training picks ``net``'s convolution kernels. On CPU with ``cpu_kernels``: mindresnet's
    (:func:`mindresnet.kernels.use_cpu_kernels`: same parameters and results, oneDNN's blocked jit
    kernels instead of MindSpore's plain-layout ones; see bench/README.md). Under ``amp`` ``O1``-``O3``:
    MindSpore's, since its AMP rewrite re-parses ``construct`` outside its module, where the kernels'
    helpers are undefined. Other devices keep MindSpore's."""
    if ms.get_context("device_target") != "CPU":
        return
    if amp != "O0":
        use_native_kernels(net)
    elif cpu_kernels:
        use_cpu_kernels(net)


def amp_rewrite_folder(amp: str) -> ContextManager:
    """The working directory for building a step of mixed-precision level ``amp``: the compiler dumps folder
    where MindSpore's AMP rewrite writes its sources (:func:`~mindresnet.runtime.in_dumps_folder`); float32
    (``O0``) rewrites nothing and stays where it is."""
    return in_dumps_folder() if amp != "O0" else contextlib.nullcontext()


def build_train_step(net: nn.Cell, loss_fn: nn.Cell, optimizer: nn.Optimizer, amp: str = "O0",
                     loss_scale: float = 1024.0, cpu_kernels: bool = True, grad_accum: int = 1,
                     clip_grad: Optional[float] = None, ema=None, steps_per_epoch: Optional[int] = None) -> nn.Cell:
    """The train step ``step(images, labels) -> loss`` (forward, backward, update).

    Plain runs use MindSpore's ``amp.build_train_network``: one compiled graph per step; ``O0`` is
    float32, ``O1``-``O3`` cast to float16 with a static loss scale; data-parallel runs average
    gradients across ranks. With ``grad_accum`` > 1, ``clip_grad`` or an optimizer without
    ``loss_scale`` (AdamW) under AMP, the step is a :class:`ComposedTrainStep` instead. With ``ema``
    (an :class:`EMA`), the average follows every optimizer update.

    ``net``'s convolution kernels are picked by :func:`switch_kernels` (``cpu_kernels`` False: left as they are).

    Args:
        optimizer: from :func:`build_optimizer`, with ``loss_scale`` from :func:`optimizer_loss_scale`.
        grad_accum: micro-batches whose mean gradient makes one update.
        clip_grad: clip the update's gradient to this global L2 norm.
        steps_per_epoch: micro-batches per epoch; an epoch's last update may average fewer.
    """
    switch_kernels(net, amp, cpu_kernels)
    if grad_accum > 1 or clip_grad or (amp != "O0" and isinstance(optimizer, nn.AdamWeightDecay)):
        step = ComposedTrainStep(net, loss_fn, optimizer, amp, loss_scale if amp != "O0" else 1.0,
                                 grad_accum, clip_grad, ema, steps_per_epoch)
    else:
        kwargs = {}
        if amp != "O0":
            kwargs["loss_scale_manager"] = ms.amp.FixedLossScaleManager(loss_scale, drop_overflow_update=False)
        with amp_rewrite_folder(amp):
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
        with amp_rewrite_folder(amp):
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


class EMA(nn.Cell):
    """Exponential moving average of every parameter of ``net`` (BatchNorm statistics included).

    ``update()`` after each optimizer step: ``avg = d * avg + (1 - d) * param`` with
    ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (TensorFlow's ``num_updates``
    warm-up, so short fine-tunes are not dominated by the initial weights). It only reads the
    weights after the optimizer has applied its (unscaled) update, so AMP loss scaling cannot
    reach the average (the double scaling of mindcv#604 came from EMA inside a loss-scaled step).
    The averages are parameters named ``ema.<name>``: they are saved in, and resumed from, the
    last checkpoint.
    """

    def __init__(self, net: nn.Cell, decay: float):
        super().__init__(auto_prefix=False)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.weights = ms.ParameterTuple(net.get_parameters())
        self.averages = self.weights.clone(prefix="ema", init="same")
        self.updates = ms.Parameter(ms.Tensor(np.zeros([1], np.float32)), name="ema.updates", requires_grad=False)
        self.hyper_map = ops.HyperMap()

    def construct(self, decay):
        return self.hyper_map(ops.partial(_average, decay), self.averages, self.weights)

    def update(self) -> None:
        """Fold the current weights into the average."""
        count = float(self.updates.asnumpy()[0])
        self(ms.Tensor(min(self.decay, (1.0 + count) / (10.0 + count)), ms.float32))
        self.updates.set_data(ms.Tensor(np.array([count + 1.0], np.float32)))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block, the network's parameters hold the averages; the raw weights return after."""
        raw = [param.asnumpy().copy() for param in self.weights]
        for param, average in zip(self.weights, self.averages):
            param.set_data(ms.Tensor(average.asnumpy(), param.dtype))
        try:
            yield
        finally:
            for param, value in zip(self.weights, raw):
                param.set_data(ms.Tensor(value, param.dtype))


_average = ops.MultitypeFuncGraph("ema_average")


@_average.register("Tensor", "Tensor", "Tensor")
def _average_one(decay, average, weight):
    return ops.assign(average, average * decay + ops.cast(weight, average.dtype) * (1.0 - decay))


@contextlib.contextmanager
def evaluation_weights(ema: Optional[EMA]) -> Iterator[None]:
    """The weights to evaluate and save as best: the EMA's averages when there is one, else the raw ones."""
    if ema is None:
        yield
    else:
        with ema.applied():
            yield
