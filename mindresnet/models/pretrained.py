"""Pretrained weights: resolve (path -> cache -> URL), map foreign names, load with a report.

Names are mapped from MindCV (``bn1``, ``classifier``) and mindspore/models
(``bn1``, ``down_sample_layer``, ``end_point``) to ours (the tutorial's) in :data:`RENAMES`,
the only place that knows about other naming schemes.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

from mindspore import Parameter

from mindresnet import hub
from mindresnet.checkpoint import CheckpointError, assign_parameters, read_checkpoint
from mindresnet.models.registry import get_variant
from mindresnet.models.resnet import ResNet

logger = logging.getLogger(__name__)

HEAD_PREFIX = "fc."
STEM_CONV = "conv1.weight"

RENAMES = [  # (pattern, replacement), applied in order to every name in a checkpoint
    (r"^bn1\.", "norm."),                 # MindCV / models: stem BatchNorm
    (r"\.bn(\d)\.", r".norm\1."),         # MindCV / models: block BatchNorms
    (r"\.down_sample_layer\.", ".down_sample."),  # mindspore/models shortcut
    (r"^(classifier|end_point)\.", "fc."),       # MindCV / models head
]
OPTIMIZER_PREFIXES = ("moments.", "accum.", "stat.", "learning_rate", "global_step", "momentum",
                      "scale_sense", "current_iterator_step", "last_overflow_iterator_step",
                      "epoch_num", "step_num")


@dataclass
class LoadReport:
    """What :func:`load_weights` did with each parameter."""

    source: str
    loaded: List[str] = field(default_factory=list)
    skipped_head: List[str] = field(default_factory=list)
    skipped_stem: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} parameters from {self.source}"]
        if self.skipped_head:
            parts.append(f"head left freshly initialised: {', '.join(self.skipped_head)}")
        if self.skipped_stem:
            parts.append(f"stem conv kept random (cifar stem): {', '.join(self.skipped_stem)}")
        if self.missing:
            parts.append(f"missing: {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected (ignored): {', '.join(self.unexpected[:10])}"
                         + (" ..." if len(self.unexpected) > 10 else ""))
        return "; ".join(parts)


def canonical_name(name: str) -> str:
    """Our parameter name for ``name`` written in the MindCV, mindspore/models or tutorial scheme."""
    for pattern, replacement in RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def load_weights(net: ResNet, path: Union[str, Path], params: Optional[Dict[str, Parameter]] = None
                 ) -> LoadReport:
    """Load a ``.ckpt`` of any supported naming into ``net``.

    A head (``fc``) of another shape is skipped and stays freshly initialised; so is the stem
    convolution of a ``cifar`` stem net fed ImageNet weights. Optimizer state is ignored.
    ``params``: the file's parameters when the caller has already read them (``read_checkpoint``).

    Raises:
        CheckpointError: the file is unreadable, or a backbone parameter is missing or has
            another shape (the message names them).
    """
    if params is None:
        params, _ = read_checkpoint(path)
    source: Dict[str, Parameter] = {}
    report = LoadReport(source=str(path))
    for name, value in params.items():
        if name.startswith(OPTIMIZER_PREFIXES):
            continue
        source[canonical_name(name)] = value
    to_load: Dict[str, Parameter] = {}
    wrong_shape = []
    for param in net.get_parameters():
        name = param.name
        if name not in source:
            report.missing.append(name)
            continue
        value = source.pop(name)
        if tuple(value.shape) == tuple(param.shape):
            to_load[name] = value
            report.loaded.append(name)
        elif name.startswith(HEAD_PREFIX):
            report.skipped_head.append(name)
        elif name == STEM_CONV and getattr(net, "stem", "imagenet") == "cifar":
            report.skipped_stem.append(name)
        else:
            wrong_shape.append(f"{name} {tuple(value.shape)} in file vs {tuple(param.shape)} in model")
    report.unexpected = sorted(source)
    backbone_missing = [n for n in report.missing if not n.startswith(HEAD_PREFIX)]
    if wrong_shape or backbone_missing:
        problems = []
        if backbone_missing:
            problems.append(f"missing {len(backbone_missing)}: {', '.join(backbone_missing[:8])}")
        if wrong_shape:
            problems.append(f"shape mismatch: {'; '.join(wrong_shape[:8])}")
        raise CheckpointError(f"Checkpoint {path} does not fit {getattr(net, 'arch', 'this model')} "
                              f"({' | '.join(problems)}). Check --arch/--stem, or pass a checkpoint "
                              "of this architecture.")
    report.skipped_head += [n for n in report.missing if n.startswith(HEAD_PREFIX)]
    report.missing = []
    assign_parameters(net, to_load)
    logger.info("%s", report)
    return report


def pretrained_path(name: str) -> Path:
    """Where the cached official weights of ``name`` live (or will live)."""
    weights = get_variant(name).weights
    if weights is None:
        raise ValueError(f"{name} has no official MindSpore ImageNet weights. Pass pretrained=<path "
                         "to a .ckpt> (--pretrained PATH) or train from scratch (--pretrained false).")
    return hub.cache_dir() / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def download_pretrained(name: str) -> Path:
    """Download the official weights of ``name`` once into the cache and return the path.

    Only one process downloads at a time; later calls (and other ranks) reuse the file.
    """
    weights = get_variant(name).weights
    dest = pretrained_path(name)
    return hub.fetch(weights.url, dest, sha256=weights.sha256, verify=read_checkpoint)


def load_pretrained(net: ResNet, name: str, pretrained: Union[bool, str, Path]) -> LoadReport:
    """Load ``pretrained`` (True: official weights of ``name``; a path: that file) into ``net``."""
    if pretrained is True:
        path = download_pretrained(name)
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise CheckpointError(f"--pretrained {path}: no such file. Pass an existing .ckpt, "
                                  "'true' to download the official weights, or 'false'.")
    return load_weights(net, path)
