"""Pretrained weights: find them (path, published tag -> cache -> URL), identify them, load them with a report.

:func:`parse_pretrained` is the one reader of a ``pretrained`` value (flag, YAML key or argument);
:func:`open_weights` reads a weights file of any supported format and says which naming scheme
and convention it comes from; :func:`load_weights` copies it into a network under our names.
Building the network in the right convention is :mod:`mindresnet.models.factory`'s and
:mod:`mindresnet.models.loader`'s job.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple, Union

from mindresnet import hub
from mindresnet.parsing import FALSE_WORDS, NONE_WORDS, TRUE_WORDS
from mindresnet.errors import CheckpointError, ConfigError
from mindresnet.checkpoint import assign_parameters
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.models.identify import looks_like
from mindresnet.models.naming import IGNORED_SUFFIXES, canonical_name, detect_naming, naming_convention
from mindresnet.models.registry import VARIANTS, Weights, get_variant, get_weights
from mindresnet.models.resnet import ResNet
from mindresnet.models.weight_files import Params, read_weights

logger = logging.getLogger(__name__)

Pretrained = Union[bool, str]
OPTIMIZER_PREFIXES = ("moments.", "accum.", "stat.", "learning_rate", "global_step", "momentum",
                      "scale_sense", "current_iterator_step", "last_overflow_iterator_step",
                      "epoch_num", "step_num", "adam_m.", "adam_v.", "beta1_power", "beta2_power",
                      "grad_total.", "ema.")  # training state: optimizer, accumulated gradients, weight averages


@dataclass
class WeightsSource:
    """A weights file, read, with what it is.

    Attributes:
        path: the file.
        params: its parameters by their stored names.
        meta: its mindresnet metadata (None for files from elsewhere).
        naming: its parameter naming scheme.
        convention: the convention its weights were trained in.
        weights: the published entry it was downloaded for, if any.
    """

    path: Path
    params: Params
    meta: Optional[CheckpointMeta]
    naming: str
    convention: str
    weights: Optional[Weights] = None

    @property
    def head_shape(self) -> Optional[Tuple[int, ...]]:
        """Shape of its classifier weight (None when it has none)."""
        for name, value in self.params.items():
            if canonical_name(name) == ResNet.head_weight:
                return tuple(int(n) for n in value.shape)
        return None

    @property
    def num_classes(self) -> Optional[int]:
        """Rows of its classifier head (None when it has none)."""
        return self.head_shape[0] if self.head_shape else None

    @property
    def stem(self) -> str:
        """``"cifar"`` when its stem convolution is 3x3, else ``"imagenet"``."""
        for name, value in self.params.items():
            if canonical_name(name) == ResNet.stem_weight:
                return "cifar" if value.shape[-1] == 3 else "imagenet"
        return "imagenet"


@dataclass
class LoadReport:
    """What :func:`load_weights` did with each parameter."""

    source: str
    naming: str = "tutorial"
    loaded: List[str] = field(default_factory=list)
    skipped_head: List[str] = field(default_factory=list)
    skipped_stem: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} parameters from {self.source} ({self.naming} naming)"]
        if self.skipped_head:
            parts.append(f"head left freshly initialised: {', '.join(self.skipped_head)}")
        if self.skipped_stem:
            parts.append(f"stem conv kept random (cifar stem): {', '.join(self.skipped_stem)}")
        if self.unexpected:
            parts.append(f"unexpected (ignored): {', '.join(self.unexpected[:10])}"
                         + (" ..." if len(self.unexpected) > 10 else ""))
        return "; ".join(parts)


def parse_pretrained(value: Union[bool, str, os.PathLike, None], arch: Optional[str]) -> Pretrained:
    """A ``pretrained`` value (``--pretrained``, its YAML key, ``create_model``'s argument) as False, True
    (the default published weights of ``arch``), one of its published weights tags, or a weights file.

    Raises:
        ConfigError: none of these (names the value and the tags of ``arch``).
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip()
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS + NONE_WORDS:
        return False
    if os.path.isfile(text):
        return text
    tags = [weights.tag for weights in VARIANTS[arch].weights] if arch in VARIANTS else []
    if text in tags:
        return text
    known = f"a weights tag of {arch} ({', '.join(tags) or 'it has none'})" if arch else "a tag (tags need --arch)"
    raise ConfigError(f"--pretrained {text}: no such file, and not {known}. Pass true, false, a tag or a weights "
                      "file (.ckpt, .pth, .pt, .safetensors).")


def open_weights(name: Optional[str], pretrained: Union[bool, str, Path]) -> WeightsSource:
    """Read the weights that ``pretrained`` names for variant ``name`` and identify them.

    Args:
        name: the variant (used for its published weights; None when ``pretrained`` is a file).
        pretrained: ``True`` (the variant's default published weights), a tag of its published
            weights (e.g. ``"mindcv"`` for ResNet-50), or the path of a ``.ckpt``, ``.pth``,
            ``.pt`` or ``.safetensors`` file (see :func:`parse_pretrained`).

    The convention is the published entry's; for a file, its mindresnet metadata's (``"mindcv"``
    for mindresnet checkpoints written before conventions were recorded), else the one its
    naming scheme's publisher trains in.

    Raises:
        CheckpointError: no such file, or it cannot be read. ConfigError: no published weights.
        DownloadError: the download failed or did not match its checksum.
    """
    weights = _published(name, pretrained)
    if weights is not None:
        path = download_pretrained(name, weights.tag)
        params, meta = read_weights(path)
        return WeightsSource(path, params, meta, weights.naming, weights.convention, weights)
    path = Path(pretrained)
    params, meta = read_weights(path)
    naming = detect_naming(params)
    convention = meta.convention if meta is not None else naming_convention(naming, params)
    return WeightsSource(path, params, meta, naming, convention)


def _published(name: Optional[str], pretrained: Union[bool, str, Path]) -> Optional[Weights]:
    """The published entry ``pretrained`` asks for, or None when it names a file."""
    if pretrained is True:
        if name is None:
            raise ConfigError("Published weights need the model: pass --arch (e.g. --arch resnet50).")
        return get_weights(name)
    tags = {weights.tag for weights in get_variant(name).weights} if name is not None else set()
    if isinstance(pretrained, str) and pretrained in tags and not Path(pretrained).exists():
        return get_weights(name, pretrained)
    return None


def load_weights(net: ResNet, path: Union[str, Path], params: Optional[Params] = None,
                 allow_partial: bool = False) -> LoadReport:
    """Load a weights file of any supported format and naming into ``net``, accounting for every tensor.

    A head (``fc``) of another shape is skipped and stays freshly initialised; so is the stem
    convolution of a ``cifar`` stem net fed ImageNet weights. Optimizer state and PyTorch's
    ``num_batches_tracked`` are ignored. ``params``: the file's parameters when the caller has
    already read them. ``allow_partial``: tensors the network does not have are ignored (listed
    in the report) instead of refused.

    Raises:
        CheckpointError: the file is unreadable, a backbone parameter is missing or has another
            shape, or (unless ``allow_partial``) the file holds tensors the network does not have:
            the message names them and the architecture the file looks like.
    """
    if params is None:
        params, _ = read_weights(path)
    report = LoadReport(source=str(path), naming=detect_naming(params))
    source = {canonical_name(name): value for name, value in params.items()
              if not name.startswith(OPTIMIZER_PREFIXES) and not name.endswith(IGNORED_SUFFIXES)}
    to_load = {}
    missing, wrong_shape = [], []
    for param in net.get_parameters():
        name = param.name
        if name not in source:
            missing.append(name)
            continue
        value = source.pop(name)
        if tuple(value.shape) == tuple(param.shape):
            to_load[name] = value
            report.loaded.append(name)
        elif net.is_head(name):
            report.skipped_head.append(name)
        elif name == net.stem_weight and net.stem == "cifar":
            report.skipped_stem.append(name)
        else:
            wrong_shape.append(f"{name} {tuple(value.shape)} in file vs {tuple(param.shape)} in model")
    report.unexpected = sorted(source)
    backbone_missing = [n for n in missing if not net.is_head(n)]
    unexpected = [] if allow_partial else report.unexpected
    if wrong_shape or backbone_missing or unexpected:
        problems = []
        if backbone_missing:
            problems.append(f"missing {len(backbone_missing)}: {', '.join(backbone_missing[:8])}")
        if wrong_shape:
            problems.append(f"shape mismatch: {'; '.join(wrong_shape[:8])}")
        if unexpected:
            problems.append(f"{len(unexpected)} tensors this model does not have: {', '.join(unexpected[:8])}")
        arch = getattr(net, "arch", "this model")
        guess = looks_like(params)
        hint = (f"It looks like {guess}: pass --arch {guess}" if guess and guess != arch
                else "Check --arch/--stem, or pass a checkpoint of this architecture")
        partial = " (to fine-tune from the tensors that fit, train with --allow-partial)" if unexpected else ""
        raise CheckpointError(f"Checkpoint {path} does not fit {arch} ({' | '.join(problems)}). {hint}{partial}.")
    report.skipped_head += missing
    assign_parameters(net, to_load)
    logger.info("%s", report)
    return report


def pretrained_path(name: str, tag: Optional[str] = None) -> Path:
    """Where the cached published weights of ``name`` (default or ``tag``) live, or will live."""
    return hub.cache_dir() / "checkpoints" / get_weights(name, tag).file_name


def download_pretrained(name: str, tag: Optional[str] = None) -> Path:
    """Download the published weights of ``name`` once into the cache and return the path.

    The file is checked against its SHA-256 (full or the prefix in its name) when one is known,
    else by reading it. Only one process downloads at a time; later calls reuse the file.
    """
    weights = get_weights(name, tag)
    checksum = weights.sha256 or weights.sha256_prefix
    return hub.fetch(weights.url, pretrained_path(name, tag), sha256=checksum,
                     verify=None if checksum else read_weights)
