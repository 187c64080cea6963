"""mindresnet's oneDNN convolution kernels compute what ``ops.Conv2D`` computes.

Every convolution shape of the model zoo (both stems, strides 1 and 2, 'same' and symmetric
padding, ResNeXt groups, even and odd map sides) is collected from the real networks and checked
for its output, input gradient and weight gradient; then whole train steps are compared.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from conftest import assert_same_updates, conv_and_grads, random_batch, step_losses, twin_nets
from mindresnet import kernels
from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer
from mindresnet.training.step import build_train_step
from mindresnet.kernels import conv
from mindresnet.kernels.conv import OneDnnConv2d
from mindresnet.models import ResidualBlock, ResidualBlockBase, ResNet
from mindresnet.models.conventions import CONVENTIONS
from mindresnet.models.registry import VARIANTS

pytestmark = pytest.mark.skipif(not kernels.kernels_active(), reason=f"kernels not active: {kernels.status()}")


def zoo_convolutions():
    """``(conv attributes, input shape)`` of every distinct convolution the model zoo runs at 32 and 33 px."""
    found = {}
    families = {(v.block, v.groups, v.width_per_group) for v in VARIANTS.values()}
    for block, groups, width in sorted(families, key=str):
        for stem in ("imagenet", "cifar"):
            for convention in ("mindcv", "tutorial"):  # symmetric and 'same' padding
                net = ResNet(block, (2, 2, 2, 2), num_classes=10, stem=stem, groups=groups, width_per_group=width,
                             convention=CONVENTIONS[convention])
                for size in (32, 33):
                    for cell, shape in _input_shapes(net, size).items():
                        cell = net.conv1 if cell == "conv1" else cell
                        key = (cell.in_channels, cell.out_channels, tuple(cell.kernel_size),
                               tuple(cell.stride)[-2:], cell.pad_mode, cell.padding, cell.group, shape)
                        found[key] = key
    return sorted(found, key=str)


def _input_shapes(net: ResNet, size: int) -> dict:
    """The input shape (batch 2) of each convolution of ``net`` for a ``size`` x ``size`` image.

    Every convolution and pool of a ResNet maps a side ``n`` to ``ceil(n / stride)``.
    """
    shapes = {"conv1": (2, 3, size, size)}
    side = math.ceil(size / 4) if net.stem == "imagenet" else size
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        for index, block in enumerate(stage):
            running = side
            for name in ("conv1", "conv2", "conv3"):
                conv = getattr(block, name, None)
                if conv is not None:
                    shapes[conv] = (2, conv.in_channels, running, running)
                    running = math.ceil(running / conv.stride[-1])
            if block.down_sample is not None:
                shapes[block.down_sample[0]] = (2, block.down_sample[0].in_channels, side, side)
            side = running
    return shapes


CONVOLUTIONS = zoo_convolutions() if kernels.kernels_active() else []


@pytest.fixture
def pynative(monkeypatch):
    """One convolution at a time, op by op (faster than compiling each), on oneDNN whatever the map size
    (the small-map products that take 2x2 and 1x1 maps in a network are tests/test_small_map.py's)."""
    monkeypatch.setattr(conv, "SMALL_MAP_PIXELS", 0)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12))


def test_the_zoo_has_every_kind_of_convolution():
    kinds = {(c[2], c[3], c[4], c[6] > 1) for c in CONVOLUTIONS}
    assert {((7, 7), (2, 2), "pad", False), ((3, 3), (1, 1), "pad", False), ((3, 3), (2, 2), "same", False),
            ((3, 3), (2, 2), "pad", True), ((1, 1), (2, 2), "same", False)} <= kinds
    assert len(CONVOLUTIONS) > 50
    assert len(POINTWISE) > 5


@pytest.mark.parametrize("in_ch,out_ch,kernel,stride,pad_mode,padding,groups,shape", CONVOLUTIONS,
                         ids=lambda v: str(v).replace(" ", ""))
def test_convolution_and_gradients_match_mindspore(in_ch, out_ch, kernel, stride, pad_mode, padding, groups, shape,
                                                   pynative):
    ms.set_seed(0)
    ours = nn.Conv2d(in_ch, out_ch, kernel, stride, pad_mode=pad_mode, padding=padding, group=groups,
                     weight_init="he_normal")
    theirs = nn.Conv2d(in_ch, out_ch, kernel, stride, pad_mode=pad_mode, padding=padding, group=groups)
    theirs.weight.set_data(ours.weight.data.copy())
    assert kernels.use_cpu_kernels(ours) == 1 and isinstance(ours, OneDnnConv2d)
    x = ms.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    for what, got, expected in zip(("output", "input gradient", "weight gradient"),
                                   conv_and_grads(ours, x), conv_and_grads(theirs, x)):
        assert got.shape == expected.shape, what
        assert relative_error(got, expected) < 1e-4, what


POINTWISE = [c for c in CONVOLUTIONS if c[2] == (1, 1) and c[3] == (1, 1) and c[6] == 1]


@pytest.mark.parametrize("in_ch,out_ch,kernel,stride,pad_mode,padding,groups,shape", POINTWISE,
                         ids=lambda v: str(v).replace(" ", ""))
def test_pointwise_convolutions_match_mindspore_in_the_other_layout(in_ch, out_ch, kernel, stride, pad_mode, padding,
                                                                    groups, shape, pynative, monkeypatch):
    """1x1 stride-1 convolutions keep the plain layout without AVX-512 (``conv.PLAIN_POINTWISE``) and take the
    blocked one with it; the test above checks this machine's choice, this one the other."""
    monkeypatch.setattr(conv, "PLAIN_POINTWISE", not conv.PLAIN_POINTWISE)
    test_convolution_and_gradients_match_mindspore(in_ch, out_ch, kernel, stride, pad_mode, padding, groups, shape,
                                                   pynative)


def test_amp_steps_keep_mindsporeS_kernels():
    """MindSpore's AMP rewrite re-parses ``construct`` away from the kernels' module: no switch there."""
    net = ResNet(ResidualBlockBase, (1, 1, 1, 1), num_classes=10)
    kernels.use_cpu_kernels(net)
    optimizer = build_optimizer(net.trainable_params(), "momentum", [1e-3], 0.9, 0.0)
    build_train_step(net, build_loss(), optimizer, amp="O2")
    assert not any(isinstance(c, OneDnnConv2d) for _, c in net.cells_and_names())


def test_switch_is_reversible_and_keeps_parameters():
    net = ResNet(ResidualBlockBase, (1, 1, 1, 1), num_classes=10)
    names = [(p.name, p.shape) for p in net.get_parameters()]
    switched = kernels.use_cpu_kernels(net)
    assert switched == sum(1 for _, c in net.cells_and_names() if isinstance(c, OneDnnConv2d)) > 0
    assert [(p.name, p.shape) for p in net.get_parameters()] == names
    assert kernels.use_native_kernels(net) == switched
    assert not any(isinstance(c, OneDnnConv2d) for _, c in net.cells_and_names())
    assert [(p.name, p.shape) for p in net.get_parameters()] == names


@pytest.mark.parametrize("block,groups,convention", [(ResidualBlockBase, 1, "torch"), (ResidualBlock, 1, "tutorial"),
                                                     (ResidualBlock, 4, "mindcv")],
                         ids=["basic", "bottleneck-same-padding", "resnext"])
def test_train_step_on_the_kernels_gives_mindsporeS_losses(block, groups, convention):
    """The learning rate is small: with 0.01 this tiny net is chaotic and amplifies rounding."""
    ms.set_seed(0)
    build = lambda: ResNet(block, (1, 1, 1, 1), num_classes=10, stem="imagenet", groups=groups,  # noqa: E731
                           width_per_group=16 if groups > 1 else 64, convention=CONVENTIONS[convention])
    plain, ours, initial = twin_nets(build)
    images, labels = random_batch(8, 40)
    expected = step_losses(plain, images, labels, 3, cpu_kernels=False)
    got = step_losses(ours, images, labels, 3, cpu_kernels=True)
    assert any(isinstance(c, OneDnnConv2d) for _, c in ours.cells_and_names())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert_same_updates(initial, plain, ours)


@pytest.mark.parametrize("small_maps", [False, True], ids=["every-map-on-onednn", "small-map-products"])
def test_inference_with_frozen_weights_matches_mindspore_and_sees_new_weights(small_maps, monkeypatch):
    """Eval mode runs every map on oneDNN, or the 2x2 and 1x1 maps as small-map products (CPUs without
    AVX-512); frozen_weights() reuses the weights' blocked copies within a block and drops them on exit,
    so weights changed between blocks are used."""
    monkeypatch.setattr(conv, "SMALL_MAPS_IN_INFERENCE", small_maps)
    ms.set_seed(0)
    build = lambda: ResNet(ResidualBlock, (1, 1, 1, 1), num_classes=10, stem="imagenet")  # noqa: E731
    plain, ours, _ = twin_nets(build)
    kernels.use_cpu_kernels(ours)
    images, _ = random_batch(4, 36)
    for net in (plain, ours):
        net.set_train(False)
    expected = plain(images).asnumpy()
    with kernels.frozen_weights():
        first, again = ours(images).asnumpy(), ours(images).asnumpy()
    assert relative_error(first, expected) < 1e-4
    np.testing.assert_array_equal(again, first)
    rng = np.random.default_rng(1)
    for theirs, mine in zip(plain.get_parameters(), ours.get_parameters()):
        if theirs.name.endswith("weight"):
            changed = (theirs.asnumpy() * rng.uniform(0.5, 1.5, theirs.shape)).astype(np.float32)
            theirs.set_data(ms.Tensor(changed))
            mine.set_data(ms.Tensor(changed))
    with kernels.frozen_weights():
        changed_expected, changed_got = plain(images).asnumpy(), ours(images).asnumpy()
    assert relative_error(changed_got, changed_expected) < 1e-4
    assert relative_error(changed_got, first) > 1e-2
