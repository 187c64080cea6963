"""The ResNet network: a stem, four ``make_layer`` stages, global average pooling and ``fc``.

The network is the one owner of its layout: which parameters are the classifier, the stem and each
stage (:meth:`ResNet.param_group`, timm's ``group_matcher``), how to replace the classifier, and
what freezing the backbone means. Nothing outside it spells ``fc.`` or ``layerN.``.
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence, Union

from mindspore import nn, ops

from mindresnet.models.blocks import CONV_INIT, Block, make_layer
from mindresnet.models.conventions import Convention, get_convention

STEMS = ("imagenet", "cifar")
HEAD = "fc"  # the classifier's attribute, hence its parameters' prefix
STEM_CONV = "conv1"
STAGES = ("layer1", "layer2", "layer3", "layer4")
HEAD_GROUP = len(STAGES) + 1  # parameter groups: stem 0, stages 1-4, head 5 (timm's layer ids)
MOVING_STATISTICS = re.compile(r"\.moving_(mean|variance)$")


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

    head_weight = f"{HEAD}.weight"  # parameter names that loading code checks
    stem_weight = f"{STEM_CONV}.weight"

    def get_classifier(self) -> nn.Dense:
        """The classifier (timm's ``get_classifier``)."""
        return getattr(self, HEAD)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one of ``num_classes`` outputs (timm's
        ``reset_classifier``); its parameters keep their names (MindSpore prefixes them on assignment)."""
        setattr(self, HEAD, nn.Dense(self.num_features, int(num_classes)))

    @staticmethod
    def group_matcher() -> Dict[str, str]:
        """Regular expressions of the parameter names of each group (timm's ``group_matcher``): the stem,
        the blocks (the stage number captured) and the head."""
        return {"stem": rf"^({STEM_CONV}|norm)\.", "blocks": r"^layer(\d+)\.", "head": rf"^{HEAD}\."}

    @classmethod
    def param_group(cls, name: str) -> int:
        """Depth of parameter ``name`` from the input: stem 0, stage ``layerN`` N, head :data:`HEAD_GROUP`."""
        matcher = cls.group_matcher()
        if re.match(matcher["head"], name):
            return HEAD_GROUP
        stage = re.match(matcher["blocks"], name)
        return int(stage.group(1)) if stage else 0

    @classmethod
    def is_head(cls, name: str) -> bool:
        """Whether parameter ``name`` belongs to the classifier."""
        return cls.param_group(name) == HEAD_GROUP

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) everything but the classifier.

        Frozen: backbone parameters get ``requires_grad=False`` and backbone BatchNorm layers run in
        inference mode even while the network trains (``use_batch_statistics=False``), so they
        normalise with, and never update, their moving statistics (freezing only the weights lets
        them drift, pytorch/pytorch#86590). Unfrozen: every weight trains and BatchNorm follows the
        training flag again. Build the train step after calling this: graph mode compiles the mode in.
        """
        for param in self.get_parameters():
            if not MOVING_STATISTICS.search(param.name):
                param.requires_grad = (not frozen) or self.is_head(param.name)
        for name, cell in self.cells_and_names():
            if isinstance(cell, nn.BatchNorm2d) and not self.is_head(name + "."):
                cell.use_batch_statistics = False if frozen else None

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

