"""BatchNorm on mindresnet's CPU kernels (``batch_norm.cc``), switched in by ``use_cpu_kernels``.

:class:`CpuBatchNorm2d` is ``nn.BatchNorm2d`` (same object, parameters and names) whose batch-statistics
pass runs as two AOT custom ops: forward (output, batch mean and biased variance; it updates the
moving statistics in place as MindSpore's kernel does: ``moving = moving * momentum + batch * (1 -
momentum)`` in the user's terms, the variance unbiased) and backward (input, scale and shift
gradients). Inference (the moving statistics) is a third op.
"""
from __future__ import annotations

import numpy as np
import mindspore as ms
from mindspore import nn, ops


def _same_shapes(*shapes):
    return [shapes[0], shapes[1], shapes[1]]  # forward: y like x; batch mean and variance like gamma


def _gradient_shapes(*shapes):
    return [shapes[1], shapes[2], shapes[2]]  # backward: dx like x; dgamma and dbeta like gamma


class _BatchNormTraining(nn.Cell):
    """``(y, mean, variance) = batch_norm(x, gamma, beta)`` with its gradient, as AOT custom ops."""

    def __init__(self, library: str):
        super().__init__()
        self.forward = ops.Custom(f"{library}:batch_norm_forward", _same_shapes,
                                  [ms.float32, ms.float32, ms.float32], func_type="aot")
        self.forward.add_prim_attr("side_effect_mem", True)  # it updates the moving statistics in place
        self.backward = ops.Custom(f"{library}:batch_norm_backward", _gradient_shapes,
                                   [ms.float32, ms.float32, ms.float32], func_type="aot")

    def construct(self, x, gamma, beta, moving_mean, moving_variance, config):
        return self.forward(x, gamma, beta, moving_mean, moving_variance, config)

    def bprop(self, x, gamma, beta, moving_mean, moving_variance, config, out, dout):
        dx, dgamma, dbeta = self.backward(dout[0], x, gamma, out[1], out[2], config)
        return (dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_variance),
                ops.zeros_like(config))


class _BatchNormInference(nn.Cell):
    """``y = gamma * (x - moving_mean) / sqrt(moving_variance + eps) + beta`` as an AOT custom op.

    Its gradient (for a frozen BatchNorm in a training network, ``ResNet.freeze_backbone``) is
    MindSpore's own arithmetic; the moving statistics get none.
    """

    def __init__(self, library: str):
        super().__init__()
        self.forward = ops.Custom(f"{library}:batch_norm_inference", lambda *shapes: shapes[0], ms.float32,
                                  func_type="aot")

    def construct(self, x, gamma, beta, moving_mean, moving_variance, config):
        return self.forward(x, gamma, beta, moving_mean, moving_variance, config)

    def bprop(self, x, gamma, beta, moving_mean, moving_variance, config, out, dout):
        invstd = ops.rsqrt(moving_variance + config[0])
        per_channel = (1, -1, 1, 1)
        normalised = (x - moving_mean.reshape(per_channel)) * invstd.reshape(per_channel)
        dx = dout * (gamma * invstd).reshape(per_channel)
        return (dx, (dout * normalised).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3)),
                ops.zeros_like(moving_mean), ops.zeros_like(moving_variance), ops.zeros_like(config))


class CpuBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` on mindresnet's CPU kernels (float32 NCHW; other dtypes keep MindSpore's)."""

    def construct(self, x):
        if x.dtype != ms.float32:
            return super().construct(x)
        batch_statistics = self.training if self.use_batch_statistics is None else self.use_batch_statistics
        if not batch_statistics:
            return self.cpu_batch_norm_inference(x, self.gamma, self.beta, self.moving_mean, self.moving_variance,
                                                 self.cpu_batch_norm_config)
        return self.cpu_batch_norm(x, self.gamma, self.beta, self.moving_mean, self.moving_variance,
                                   self.cpu_batch_norm_config)[0]


def eligible(cell: nn.Cell) -> bool:
    """A 4-D NCHW ``nn.BatchNorm2d`` with learned scale and shift."""
    return type(cell) is nn.BatchNorm2d and cell.format == "NCHW"  # pylint: disable=unidiomatic-typecheck


def switch(cell: nn.BatchNorm2d, library: str) -> None:
    """Make ``cell`` a :class:`CpuBatchNorm2d` in place."""
    cell.__class__ = CpuBatchNorm2d
    cell.cpu_batch_norm = _BatchNormTraining(library)
    cell.cpu_batch_norm_inference = _BatchNormInference(library)
    cell.cpu_batch_norm_config = ms.Tensor(np.array([cell.eps, cell.momentum], np.float32))


def restore(cell: nn.Cell) -> bool:
    """Make a :class:`CpuBatchNorm2d` an ``nn.BatchNorm2d`` again; whether it was one."""
    if not isinstance(cell, CpuBatchNorm2d):
        return False
    del cell.cpu_batch_norm
    del cell.cpu_batch_norm_inference
    cell.__class__ = nn.BatchNorm2d
    return True
