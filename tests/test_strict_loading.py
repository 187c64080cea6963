"""Strict loading: a file of a neighbouring depth or width is refused, naming the --arch it looks like."""
from __future__ import annotations

import functools

import mindspore as ms
import numpy as np
import pytest

from mindresnet.errors import CheckpointError
from mindresnet.models import create_model
from mindresnet.models.identify import looks_like
from mindresnet.models.pretrained import load_weights

NEIGHBOURS = [("resnet18", "resnet34"), ("resnet50", "resnet101"), ("resnet101", "resnet152"),
              ("resnet50", "resnext50_32x4d"), ("resnext101_32x4d", "resnext101_32x8d"),
              ("resnext101_32x8d", "resnext101_64x4d"), ("resnext101_64x4d", "resnext152_64x4d")]
PAIRS = NEIGHBOURS + [(b, a) for a, b in NEIGHBOURS]


@functools.lru_cache(maxsize=None)
def model(arch: str):
    """``arch`` with 10 classes, its parameters left uninitialised (only names and shapes are read)."""
    with ms.nn.utils.no_init_parameters():
        return create_model(arch, num_classes=10)


def shapes_of(arch: str) -> dict:
    """The parameters of ``arch`` as a weights file holds them (shapes only: nothing is copied on a refusal)."""
    return {param.name: np.empty(param.shape, np.float32) for param in model(arch).get_parameters()}


@pytest.mark.parametrize("arch", sorted({arch for pair in PAIRS for arch in pair}))
def test_layout_names_the_architecture(arch):
    assert looks_like(shapes_of(arch)) == arch


@pytest.mark.parametrize("file_arch, built", PAIRS)
def test_weights_of_a_neighbour_are_refused_naming_the_arch(file_arch, built):
    with pytest.raises(CheckpointError, match=f"does not fit {built} .*It looks like {file_arch}: "
                                              f"pass --arch {file_arch}"):
        load_weights(model(built), f"{file_arch}.ckpt", shapes_of(file_arch))


def test_allow_partial_ignores_extra_tensors_only():
    net = create_model("resnet18", num_classes=10)
    deeper = {param.name: ms.Tensor(np.full(param.shape, 0.5, np.float32))
              for param in create_model("resnet34", num_classes=10).get_parameters()}
    with pytest.raises(CheckpointError, match="tensors this model does not have: layer1.2.*--allow-partial"):
        load_weights(net, "resnet34.ckpt", deeper)
    report = load_weights(net, "resnet34.ckpt", deeper, allow_partial=True)
    assert "layer1.2.conv1.weight" in report.unexpected
    assert np.all(net.conv1.weight.asnumpy() == 0.5)


def test_training_state_is_not_an_unexpected_tensor():
    net = create_model("resnet18", num_classes=10)
    params = {param.name: param.asnumpy() for param in net.get_parameters()}
    state = {f"{prefix}conv1.weight": params["conv1.weight"] for prefix in ("moments.", "adam_m.", "grad_total.", "ema.")}
    params = {name: ms.Tensor(value) for name, value in {**params, **state, "global_step": np.zeros(1)}.items()}
    assert load_weights(net, "last.ckpt", params).unexpected == []
