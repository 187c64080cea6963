"""A compact PyTorch ResNet with the same architecture as ``mindresnet.models`` (benchmark only).

Same blocks (basic 3x3-3x3 / bottleneck 1x1-3x3-1x1 with the stride on the 3x3, v1.5), same
stems (``imagenet``: 7x7 stride-2 conv + 3x3 stride-2 max-pool padded like MindSpore's
``pad_mode="same"``; ``cifar``: 3x3 stride-1 conv), the same BatchNorm (eps 1e-5, momentum 0.1 =
MindSpore's 0.9), global average pooling and ``fc``.
Parameter names follow the same scheme (``layerN.i.convK.weight``, ``down_sample.{0,1}``), so
weights convert one-to-one (:func:`state_dict_from_mindspore`).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

DEPTHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
          "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3)),
          "resnet152": ("bottleneck", (3, 8, 36, 3))}


def conv(in_channel: int, out_channel: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free convolution with 'same'-style padding, He-initialised (fan_out, ReLU) like mindresnet."""
    layer = nn.Conv2d(in_channel, out_channel, kernel, stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return layer


class SameMaxPool(nn.Module):
    """3x3 stride-2 max-pool with MindSpore's ``pad_mode="same"`` padding (extra row/column at the end)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / 2) - 1) * 2 + 3 - size, 0)
            pads += [total // 2, total - total // 2]
        return nn.functional.max_pool2d(nn.functional.pad(x, pads, value=float("-inf")), 3, 2)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, expansion 1 (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channel: int, channel: int, stride: int = 1, down_sample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1, self.norm1 = conv(in_channel, channel, 3, stride), nn.BatchNorm2d(channel)
        self.conv2, self.norm2 = conv(channel, channel, 3), nn.BatchNorm2d(channel)
        self.relu = nn.ReLU(inplace=True)
        self.down_sample = down_sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down_sample is None else self.down_sample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        return self.relu(self.norm2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1, expansion 4 (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, in_channel: int, channel: int, stride: int = 1, down_sample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1, self.norm1 = conv(in_channel, channel, 1), nn.BatchNorm2d(channel)
        self.conv2, self.norm2 = conv(channel, channel, 3, stride), nn.BatchNorm2d(channel)
        self.conv3, self.norm3 = conv(channel, channel * 4, 1), nn.BatchNorm2d(channel * 4)
        self.relu = nn.ReLU(inplace=True)
        self.down_sample = down_sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down_sample is None else self.down_sample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        return self.relu(self.norm3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """Stem, four stages, global average pooling, ``fc``."""

    def __init__(self, block: type, layers: Sequence[int], num_classes: int = 10, stem: str = "imagenet"):
        super().__init__()
        self.conv1 = conv(3, 64, 7, 2) if stem == "imagenet" else conv(3, 64, 3)
        self.norm = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.max_pool = SameMaxPool() if stem == "imagenet" else nn.Identity()
        last, stages = 64, []
        for index, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if index == 0 else 2
            out = width * block.expansion
            down = None
            if stride != 1 or last != out:
                down = nn.Sequential(conv(last, out, 1, stride), nn.BatchNorm2d(out))
            stage = [block(last, width, stride, down)] + [block(out, width) for _ in range(1, blocks)]
            stages.append(nn.Sequential(*stage))
            last = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.max_pool(self.relu(self.norm(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


def create_model(arch: str, num_classes: int = 10, stem: str = "imagenet") -> ResNet:
    """The PyTorch twin of ``mindresnet.models.create_model(arch, num_classes, stem=stem)``."""
    kind, layers = DEPTHS[arch]
    return ResNet(BasicBlock if kind == "basic" else Bottleneck, layers, num_classes, stem)


BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def state_dict_from_mindspore(arrays: Dict[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    """Rename a mindresnet checkpoint's arrays (``norm.gamma`` ...) to this model's state dict."""
    state = {}
    for name, value in arrays.items():
        prefix, _, leaf = name.rpartition(".")
        state[f"{prefix}.{BN_NAMES.get(leaf, leaf)}"] = torch.from_numpy(np.ascontiguousarray(value))
    return state


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, inputs: torch.Tensor,
               labels: torch.Tensor, lr: float) -> float:
    """One optimizer step at learning rate ``lr``; returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(inputs), labels)
    loss.backward()
    optimizer.step()
    return loss.item()
