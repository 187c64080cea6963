"""Which registered architecture a weights file holds, read off its block names and shapes.

Loading checks a file against the network built for it; when they differ, the message names
the architecture the file looks like, so that the user knows which ``--arch`` to pass.
"""
from __future__ import annotations

import re
from typing import Mapping, Optional

from mindresnet.errors import CheckpointError
from mindresnet.models.blocks import ResidualBlock, ResidualBlockBase
from mindresnet.models.naming import canonical_name
from mindresnet.models.registry import VARIANTS, list_models


def layout(params: Mapping[str, object]) -> tuple:
    """``(block type, blocks per stage, groups, width per group)`` of the ResNet whose parameters ``params`` are."""
    shapes = {canonical_name(name): tuple(value.shape) for name, value in params.items()}
    blocks = [1 + max((int(m.group(1)) for name in shapes for m in [re.match(rf"layer{stage}\.(\d+)\.", name)] if m),
                      default=-1) for stage in (1, 2, 3, 4)]
    bottleneck = "layer1.0.conv3.weight" in shapes
    groups, width_per_group = 1, 64
    if bottleneck and "layer1.0.conv2.weight" in shapes:
        out_channels, group_width = shapes["layer1.0.conv2.weight"][:2]
        groups, width_per_group = out_channels // group_width, group_width
        if groups == 1:
            width_per_group = 64
    return ResidualBlock if bottleneck else ResidualBlockBase, tuple(blocks), groups, width_per_group


def looks_like(params: Mapping[str, object]) -> Optional[str]:
    """The registered variant with the layout of ``params``, or None."""
    found = layout(params)
    for name, variant in VARIANTS.items():
        if (variant.block, variant.layers, variant.groups, variant.width_per_group) == found:
            return name
    return None


def infer_arch(params: Mapping[str, object], source: object) -> str:
    """:func:`looks_like`, or CheckpointError naming ``source`` when no registered variant has that layout."""
    name = looks_like(params)
    if name is None:
        block, blocks, groups, _ = layout(params)
        raise CheckpointError(f"{source} holds a {'bottleneck' if block is ResidualBlock else 'basic-block'} network "
                              f"with {blocks} blocks per stage and {groups} groups, which is none of "
                              f"{', '.join(list_models())}. Pass --arch if it is one of them.")
    return name
