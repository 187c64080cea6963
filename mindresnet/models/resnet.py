"""The ResNet network: a stem, four ``make_layer`` stages, global average pooling and ``fc``."""
from __future__ import annotations

from typing import List, Sequence, Union

from mindspore import nn, ops

from mindresnet.models.blocks import CONV_INIT, Block, make_layer
from mindresnet.models.conventions import Convention, get_convention

STEMS = ("imagenet", "cifar")


def depth_rates(drop_path: float, blocks: int) -> List[float]:
    """Stochastic-depth rate of each of ``blocks`` blocks: 0 for the first, rising linearly to ``drop_path``."""
    return [drop_path * index / max(1, blocks - 1) for index in range(blocks)]


class ResNet(nn.Cell):
    """ResNet / ResNeXt classifier.

    Args:
        block: ``ResidualBlockBase`` or ``ResidualBlock``.
        layer_nums: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes: size of the ``fc`` head.
        stem: ``"imagenet"`` (7x7 stride-2 conv + 3x3 max-pool) or ``"cifar"`` (3x3 stride-1
            conv, no pool: keeps the detail of 32x32 images).
        groups, width_per_group: ResNeXt cardinality and group width.
        in_channels: channels of the input image.
        convention: padding/pooling/BatchNorm convention, a name from
            :data:`~mindresnet.models.conventions.CONVENTIONS` (default ``"mindcv"``); kept as
            ``net.convention`` (its name) so a checkpoint can record it.
        drop_path: stochastic-depth rate of the last block; block ``i`` of ``n`` gets
            ``drop_path * i / (n - 1)`` (timm's linear rule); active in training only. Kept as
            ``net.drop_path``.

    Global average pooling makes any input size from 32x32 up work.
    """

    def __init__(self, block: Block, layer_nums: Sequence[int], num_classes: int = 1000,
                 stem: str = "imagenet", groups: int = 1, width_per_group: int = 64, in_channels: int = 3,
                 convention: Union[str, Convention, None] = None, drop_path: float = 0.0):
        super().__init__()
        convention = get_convention(convention)
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r} is not one of {STEMS}.")
        if len(layer_nums) != 4:
            raise ValueError(f"layer_nums needs 4 stages, got {tuple(layer_nums)}.")
        self.stem = stem
        self.convention = convention.name
        self.drop_path = float(drop_path)
        self.num_features = 512 * block.expansion
        if stem == "imagenet":
            self.conv1 = convention.conv(in_channels, 64, 7, stride=2, weight_init=CONV_INIT)
        else:
            self.conv1 = convention.conv(in_channels, 64, 3, stride=1, weight_init=CONV_INIT)
        self.norm = convention.batch_norm(64)
        self.relu = nn.ReLU()
        self.max_pool = convention.stem_pool() if stem == "imagenet" else None
        widths = (64, 128, 256, 512)
        last = 64
        rates = depth_rates(drop_path, sum(layer_nums))
        stages = []
        for index, (width, blocks) in enumerate(zip(widths, layer_nums)):
            stages.append(make_layer(last, block, width, blocks, stride=1 if index == 0 else 2,
                                     groups=groups, width_per_group=width_per_group, convention=convention,
                                     drop_path=rates[:blocks]))
            rates = rates[blocks:]
            last = width * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Dense(self.num_features, num_classes)

    def forward_features(self, x):
        """Feature map after ``layer4`` (N, C, H/32, W/32 for the ImageNet stem)."""
        x = self.relu(self.norm(self.conv1(x)))
        if self.max_pool is not None:
            x = self.max_pool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x):
        """Global average pooling and the ``fc`` classifier."""
        return self.fc(ops.mean(x, (2, 3)))

    def construct(self, x):
        return self.forward_head(self.forward_features(x))

