"""ImageNet-1k class names, shipped as package data, for heads trained on ImageNet.

The 1000 names (index order of the ILSVRC-2012 synsets, as torchvision publishes them) are in
``imagenet_classes.txt``. mindspore/models trains 1001-class heads whose index 0 is a background
class, so its class ``i + 1`` is ImageNet class ``i``.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import List, Tuple

IMAGENET_CLASSES_FILE = "imagenet_classes.txt"
IMAGENET_CLASSES = 1000
BACKGROUND = "background"  # index 0 of a 1001-class head


@lru_cache(maxsize=1)
def _imagenet_names() -> Tuple[str, ...]:
    text = resources.files(__package__).joinpath(IMAGENET_CLASSES_FILE).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def imagenet_class_names(num_classes: int = IMAGENET_CLASSES) -> List[str]:
    """Names of the outputs of an ImageNet head of ``num_classes`` (1000, or 1001 with background first).

    Raises:
        ValueError: ``num_classes`` is neither 1000 nor 1001.
    """
    names = list(_imagenet_names())
    if num_classes == IMAGENET_CLASSES:
        return names
    if num_classes == IMAGENET_CLASSES + 1:
        return [BACKGROUND] + names
    raise ValueError(f"An ImageNet head has 1000 or 1001 classes, not {num_classes}.")
