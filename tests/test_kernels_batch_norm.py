"""mindresnet's CPU BatchNorm kernel computes what ``nn.BatchNorm2d`` computes, moving statistics included."""
from __future__ import annotations

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from mindresnet import kernels
from mindresnet.kernels.batch_norm import CpuBatchNorm2d

pytestmark = pytest.mark.skipif(not kernels.kernels_active(), reason=f"kernels not active: {kernels.status()}")


class CubedSum(nn.Cell):
    """A scalar whose gradient weighs each output differently (a plain sum's would vanish through BN)."""

    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def construct(self, x):
        return (self.bn(x) ** 3).sum()


def pair(channels: int, eps: float, momentum: float):
    rng = np.random.default_rng(channels)
    cells = [nn.BatchNorm2d(channels, eps=eps, momentum=momentum) for _ in range(2)]
    gamma, beta = rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.3, channels)
    for cell in cells:
        cell.gamma.set_data(ms.Tensor(gamma.astype(np.float32)))
        cell.beta.set_data(ms.Tensor(beta.astype(np.float32)))
    kernels.use_cpu_kernels(cells[1])
    assert isinstance(cells[1], CpuBatchNorm2d) and type(cells[0]) is nn.BatchNorm2d
    return cells


def relative_error(got, expected) -> float:
    got, expected = np.asarray(got), np.asarray(expected)
    return float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12))


@pytest.mark.parametrize("shape,eps", [((4, 16, 5, 5), 1e-5), ((2, 64, 8, 8), 1e-4), ((3, 8, 1, 1), 1e-5),
                                       ((2, 32, 17, 9), 1e-5)])
def test_training_pass_matches_mindspore(shape, eps):
    theirs, ours = pair(shape[1], eps, momentum=0.9)
    x = ms.Tensor((np.random.default_rng(0).standard_normal(shape) * 2 + 1).astype(np.float32))
    for cell in (theirs, ours):
        cell.set_train(True)
    outputs = [cell(x).asnumpy() for cell in (theirs, ours)]
    assert relative_error(outputs[1], outputs[0]) < 1e-4
    grads = [ms.grad(CubedSum(cell), grad_position=0, weights=cell.trainable_params())(x) for cell in (theirs, ours)]
    assert relative_error(grads[1][0].asnumpy(), grads[0][0].asnumpy()) < 1e-4  # input
    for got, expected in zip(grads[1][1], grads[0][1]):  # gamma, beta
        assert relative_error(got.asnumpy(), expected.asnumpy()) < 1e-4
    # three training passes each: the moving statistics moved the same way
    for name in ("moving_mean", "moving_variance"):
        assert relative_error(getattr(ours, name).asnumpy(), getattr(theirs, name).asnumpy()) < 1e-4, name
    for cell in (theirs, ours):
        cell.set_train(False)
    assert relative_error(ours(x).asnumpy(), theirs(x).asnumpy()) < 1e-4


def set_moving_statistics(cells, seed: int) -> None:
    rng = np.random.default_rng(seed)
    channels = cells[0].moving_mean.shape[0]
    mean, variance = rng.normal(0.5, 1.0, channels), rng.uniform(0.2, 3.0, channels)
    for cell in cells:
        cell.moving_mean.set_data(ms.Tensor(mean.astype(np.float32)))
        cell.moving_variance.set_data(ms.Tensor(variance.astype(np.float32)))


@pytest.mark.parametrize("shape,eps", [((4, 16, 5, 5), 1e-5), ((2, 64, 8, 8), 1e-4), ((3, 8, 1, 1), 1e-5)])
def test_inference_matches_mindspore(shape, eps):
    cells = pair(shape[1], eps, momentum=0.9)
    set_moving_statistics(cells, seed=shape[1])
    x = ms.Tensor((np.random.default_rng(0).standard_normal(shape) * 2 + 1).astype(np.float32))
    theirs, ours = (cell.set_train(False)(x).asnumpy() for cell in cells)
    assert relative_error(ours, theirs) < 1e-4


def test_frozen_batchnorm_uses_moving_statistics_in_training():
    theirs, ours = pair(8, 1e-5, momentum=0.9)
    set_moving_statistics((theirs, ours), seed=3)
    for cell in (theirs, ours):
        cell.use_batch_statistics = False
        cell.set_train(True)
    x = ms.Tensor(np.random.default_rng(1).standard_normal((2, 8, 4, 4)).astype(np.float32))
    np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), rtol=1e-5, atol=1e-6)
    grads = [ms.grad(CubedSum(cell), grad_position=0, weights=cell.trainable_params())(x) for cell in (theirs, ours)]
    assert relative_error(grads[1][0].asnumpy(), grads[0][0].asnumpy()) < 1e-4  # input
    for got, expected in zip(grads[1][1], grads[0][1]):  # gamma, beta
        assert relative_error(got.asnumpy(), expected.asnumpy()) < 1e-4
    np.testing.assert_array_equal(ours.moving_mean.asnumpy(), theirs.moving_mean.asnumpy())


def test_switch_back_restores_nn_batchnorm():
    cell = pair(4, 1e-5, 0.9)[1]
    kernels.use_native_kernels(cell)
    assert type(cell) is nn.BatchNorm2d and not hasattr(cell, "cpu_batch_norm")
    assert not hasattr(cell, "cpu_batch_norm_inference")
