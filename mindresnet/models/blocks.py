"""Residual blocks and ``make_layer``, named as in MindSpore's ResNet50 tutorial so its checkpoint loads.

Every convolution and BatchNorm is built by a :class:`~mindresnet.models.conventions.Convention`,
so the same blocks compute what each weights publisher's network computes.

ResNet: He et al., "Deep Residual Learning for Image Recognition", 2015.
ResNeXt: Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", 2017.
"""
from __future__ import annotations

from typing import Optional, Sequence, Type, Union

from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

from mindresnet.models.conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention

# He initialisation (as torchvision and MindCV). The tutorial's Normal(0, 0.02) is fine under
# pretrained weights but keeps a deep ResNet trained from scratch near chance for epochs.
CONV_INIT = HeNormal(mode="fan_out", nonlinearity="relu")
DEFAULT = CONVENTIONS[DEFAULT_CONVENTION]


def conv3x3(in_channel: int, out_channel: int, stride: int = 1, groups: int = 1,
            convention: Convention = DEFAULT) -> nn.Conv2d:
    """3x3 convolution without bias, padded as ``convention`` says."""
    return convention.conv(in_channel, out_channel, 3, stride, groups, weight_init=CONV_INIT)


def conv1x1(in_channel: int, out_channel: int, stride: int = 1, convention: Convention = DEFAULT) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return convention.conv(in_channel, out_channel, 1, stride, weight_init=CONV_INIT)


class DropPath(nn.Cell):
    """Stochastic depth (Huang et al., 2016): in training, zero a sample's residual branch with
    probability ``rate`` and scale the kept ones by ``1 / (1 - rate)``; identity in inference mode.
    It has no parameters, so networks with and without it share their checkpoints."""

    def __init__(self, rate: float):
        super().__init__()
        if not 0.0 < rate < 1.0:
            raise ValueError(f"drop-path rate must be in (0, 1), got {rate}")
        self.rate = float(rate)
        self.dropout = nn.Dropout(p=rate)

    def construct(self, x):
        if not self.training:
            return x
        return x * self.dropout(ops.ones((x.shape[0], 1, 1, 1), x.dtype))


def drop_path_cell(rate: float) -> Optional[DropPath]:
    """A :class:`DropPath` of ``rate``, or None for 0 (the block then computes exactly as without it)."""
    return DropPath(rate) if rate > 0 else None


class ResidualBlockBase(nn.Cell):
    """Basic block of ResNet-18/34: two 3x3 convolutions, expansion 1."""

    expansion = 1

    def __init__(self, in_channel: int, out_channel: int, stride: int = 1,
                 down_sample: Optional[nn.Cell] = None, groups: int = 1, width_per_group: int = 64,
                 convention: Convention = DEFAULT, drop_path: float = 0.0):
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("ResidualBlockBase supports only groups=1 and width_per_group=64; "
                             "use ResidualBlock for ResNeXt.")
        self.conv1 = conv3x3(in_channel, out_channel, stride, convention=convention)
        self.norm1 = convention.batch_norm(out_channel)
        self.conv2 = conv3x3(out_channel, out_channel, convention=convention)
        self.norm2 = convention.batch_norm(out_channel)
        self.relu = nn.ReLU()
        self.down_sample = down_sample
        self.drop_path = drop_path_cell(drop_path)

    def construct(self, x):
        identity = x
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.drop_path is not None:
            out = self.drop_path(out)
        if self.down_sample is not None:
            identity = self.down_sample(x)
        return self.relu(out + identity)


class ResidualBlock(nn.Cell):
    """Bottleneck of ResNet-50/101/152 and ResNeXt: 1x1 -> 3x3 -> 1x1, expansion 4.

    The stride sits on the 3x3 convolution (ResNet v1.5, as in the tutorial and torchvision);
    ``groups`` > 1 makes the 3x3 a grouped convolution of ``width_per_group`` channels per group.
    """

    expansion = 4

    def __init__(self, in_channel: int, out_channel: int, stride: int = 1,
                 down_sample: Optional[nn.Cell] = None, groups: int = 1, width_per_group: int = 64,
                 convention: Convention = DEFAULT, drop_path: float = 0.0):
        super().__init__()
        width = int(out_channel * (width_per_group / 64.0)) * groups
        self.conv1 = conv1x1(in_channel, width, convention=convention)
        self.norm1 = convention.batch_norm(width)
        self.conv2 = conv3x3(width, width, stride, groups, convention=convention)
        self.norm2 = convention.batch_norm(width)
        self.conv3 = conv1x1(width, out_channel * self.expansion, convention=convention)
        self.norm3 = convention.batch_norm(out_channel * self.expansion)
        self.relu = nn.ReLU()
        self.down_sample = down_sample
        self.drop_path = drop_path_cell(drop_path)

    def construct(self, x):
        identity = x
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        if self.drop_path is not None:
            out = self.drop_path(out)
        if self.down_sample is not None:
            identity = self.down_sample(x)
        return self.relu(out + identity)


Block = Type[Union[ResidualBlockBase, ResidualBlock]]


def make_layer(last_out_channel: int, block: Block, channel: int, block_nums: int, stride: int = 1,
               groups: int = 1, width_per_group: int = 64, convention: Convention = DEFAULT,
               drop_path: Optional[Sequence[float]] = None) -> nn.SequentialCell:
    """One stage of ``block_nums`` blocks; the first changes resolution/width through ``down_sample``.

    Args:
        last_out_channel: channels coming in from the previous stage.
        block: ``ResidualBlockBase`` or ``ResidualBlock``.
        channel: base width of this stage (output is ``channel * block.expansion``).
        block_nums: number of blocks.
        stride: stride of the first block.
        groups, width_per_group: ResNeXt cardinality and width (bottleneck only).
        convention: padding and BatchNorm settings of every layer.
        drop_path: the stochastic-depth rate of each block (default: none).
    """
    out_channel = channel * block.expansion
    down_sample = None
    if stride != 1 or last_out_channel != out_channel:
        down_sample = nn.SequentialCell([conv1x1(last_out_channel, out_channel, stride, convention),
                                         convention.batch_norm(out_channel)])
    shape = {"groups": groups, "width_per_group": width_per_group, "convention": convention}
    rates = list(drop_path) if drop_path is not None else [0.0] * block_nums
    layers = [block(last_out_channel, channel, stride=stride, down_sample=down_sample, drop_path=rates[0], **shape)]
    for index in range(1, block_nums):
        layers.append(block(out_channel, channel, drop_path=rates[index], **shape))
    return nn.SequentialCell(layers)
