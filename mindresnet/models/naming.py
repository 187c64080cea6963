"""Parameter naming schemes of ResNet weights, and which convention each publisher trains in.

mindresnet names its parameters as MindSpore's ResNet-50 tutorial does. The other schemes
(MindCV, mindspore/models, PyTorch's torchvision and timm) map onto it through :data:`RENAMES`,
the only place that knows them, and :func:`detect_naming` recognises a file's scheme from its
names so that :func:`naming_convention` can build the network its publisher trained.
"""
from __future__ import annotations

import re
from typing import Iterable

NAMINGS = ("tutorial", "mindcv", "models", "torch")

RENAMES = [  # (pattern, replacement), applied in order to every name in a weights file
    (r"^module\.", ""),                           # PyTorch DataParallel wrapper
    (r"^bn1\.", "norm."),                         # stem BatchNorm (all but the tutorial)
    (r"\.bn(\d)\.", r".norm\1."),                 # block BatchNorms
    (r"\.down_sample_layer\.", ".down_sample."),  # mindspore/models shortcut
    (r"\.downsample\.", ".down_sample."),         # PyTorch shortcut
    (r"^(classifier|end_point)\.", "fc."),        # MindCV / mindspore/models head
    # PyTorch BatchNorm fields, recognised by the (already renamed) BatchNorm module names
    (r"^((?:.+\.)?norm\d?|.+\.down_sample\.1)\.weight$", r"\1.gamma"),
    (r"^((?:.+\.)?norm\d?|.+\.down_sample\.1)\.bias$", r"\1.beta"),
    (r"\.running_mean$", ".moving_mean"),
    (r"\.running_var$", ".moving_variance"),
]
IGNORED_SUFFIXES = (".num_batches_tracked",)  # PyTorch BatchNorm counter: no MindSpore counterpart


def canonical_name(name: str) -> str:
    """Our (the tutorial's) parameter name for ``name`` written in any scheme of :data:`NAMINGS`."""
    for pattern, replacement in RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def detect_naming(names: Iterable[str]) -> str:
    """The scheme of :data:`NAMINGS` the parameter ``names`` are written in.

    PyTorch: ``downsample``/``running_mean``; mindspore/models: ``down_sample_layer``/``end_point``;
    MindCV: ``bn1``/``classifier``; anything else is taken as the tutorial's (and mindresnet's).
    """
    names = list(names)
    if any(".downsample." in n or n.endswith((".running_mean",) + IGNORED_SUFFIXES) for n in names):
        return "torch"
    if any(".down_sample_layer." in n or n.startswith("end_point.") for n in names):
        return "models"
    if any(n.startswith(("bn1.", "classifier.")) for n in names):
        return "mindcv"
    return "tutorial"


def naming_convention(naming: str, names: Iterable[str]) -> str:
    """The convention the publisher of a file in scheme ``naming`` (with ``names``) trained in.

    mindspore/models builds ResNet-50/101/152 its own way ('same', eps 1e-4) but ResNet-18/34
    (``res_base``, basic blocks: no ``conv3``) as PyTorch does.
    """
    if naming == "models":
        bottleneck = any(re.search(r"^layer1\.0\.conv3\.", n) for n in names)
        return "models" if bottleneck else "torch"
    return naming
