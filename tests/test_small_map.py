"""The CPU fallback without the oneDNN kernels: the small-map GEMM convolutions match ``nn.Conv2d``.

Checks one convolution (outputs and gradients, every shape the fast path takes) and the whole
train step: the optimised step and the plain one give the same loss for several steps from the
same weights on a fixed batch. The learning rate is small on purpose: with 0.01 this tiny
net is chaotic (a 1e-7 relative nudge of the weights moves the 4th loss by ~1%), which would
hide real differences behind amplified rounding.
"""
from __future__ import annotations

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from conftest import assert_same_updates, conv_and_grads, random_batch, step_losses, twin_nets
from mindresnet.models import ResidualBlock, ResidualBlockBase, ResNet
from mindresnet.kernels import use_cpu_kernels
from mindresnet.kernels.small_map import SmallMapConv2d, eligible


@pytest.mark.parametrize("kernel,stride,pad_mode,size", [
    (1, 1, "same", 2), (1, 2, "same", 2), (1, 2, "same", 3), (1, 1, "valid", 1),
    (3, 1, "pad", 1), (3, 1, "pad", 2), (3, 2, "pad", 2), (3, 2, "pad", 1), (3, 1, "same", 2),
    (3, 1, "pad", (1, 2)), (3, 1, "pad", (2, 1)), (3, 2, "pad", (1, 3)), (1, 1, "same", (1, 3)),
    # 'same' on stride 2 pads only bottom/right of an even side (tutorial and mindspore/models convs)
    (3, 2, "same", 2), (3, 2, "same", 1), (3, 2, "same", (1, 2)), (3, 2, "same", (2, 3)), (3, 1, "same", (1, 4)),
    (3, 1, "pad", 4),  # above MAX_PIXELS: the native kernel
])
def test_small_map_conv_matches_conv2d(kernel, stride, pad_mode, size):
    ms.set_seed(1)
    plain = nn.Conv2d(8, 12, kernel, stride, pad_mode=pad_mode, padding=1 if pad_mode == "pad" else 0,
                      weight_init="normal")
    fast = nn.Conv2d(8, 12, kernel, stride, pad_mode=pad_mode, padding=1 if pad_mode == "pad" else 0)
    fast.weight.set_data(plain.weight.data.copy())
    assert use_cpu_kernels(fast, onednn=False) == 1 and isinstance(fast, SmallMapConv2d)
    height, width = size if isinstance(size, tuple) else (size, size)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((3, 8, height, width)).astype(np.float32))
    for expected, got in zip(conv_and_grads(plain, x), conv_and_grads(fast, x)):
        assert expected.shape == got.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_only_exact_convolutions_are_switched():
    assert not eligible(nn.Conv2d(4, 4, 3, group=2, pad_mode="pad", padding=1))
    assert not eligible(nn.Conv2d(4, 4, 3, has_bias=True, pad_mode="pad", padding=1))
    assert not eligible(nn.Conv2d(4, 4, 3, pad_mode="pad", padding=(0, 1, 1, 1)))  # asymmetric 'pad'
    assert not eligible(nn.Conv2d(4, 4, 7, stride=2, pad_mode="pad", padding=3))
    assert eligible(nn.Conv2d(4, 4, 1)) and eligible(nn.Conv2d(4, 4, 3, pad_mode="pad", padding=1))
    assert eligible(nn.Conv2d(4, 4, 3, stride=2, pad_mode="same"))  # its bottom/right padding is reproduced


def tiny_net(block, convention="mindcv") -> ResNet:
    """One block per stage: at 32x32 with the ImageNet stem, stages 3 and 4 run on 2x2 and 1x1 maps."""
    return ResNet(block, (1, 1, 1, 1), num_classes=10, stem="imagenet", convention=convention)


@pytest.mark.parametrize("block,convention", [(ResidualBlockBase, "mindcv"), (ResidualBlock, "mindcv"),
                                              (ResidualBlock, "tutorial")],
                         ids=["basic", "bottleneck", "bottleneck-same-padding"])
def test_fast_train_step_gives_the_plain_losses(block, convention):
    ms.set_seed(0)
    plain, fast, initial = twin_nets(lambda: tiny_net(block, convention))
    names = [(p.name, p.shape) for p in fast.get_parameters()]
    images, labels = random_batch(16, 32)
    expected = step_losses(plain, images, labels, 4)
    use_cpu_kernels(fast, onednn=False)
    got = step_losses(fast, images, labels, 4)
    assert any(isinstance(cell, SmallMapConv2d) for _, cell in fast.cells_and_names())
    assert not any(isinstance(cell, SmallMapConv2d) for _, cell in plain.cells_and_names())
    assert [(p.name, p.shape) for p in fast.get_parameters()] == names  # checkpoints stay compatible
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert got[-1] < got[0]
    assert_same_updates(initial, plain, fast)
