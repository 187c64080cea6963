"""Training configuration: dataclass defaults, then a YAML file, then command-line flags.

Every field of :class:`TrainConfig` is a YAML key (``data_dir`` or ``data-dir``) and a flag
(``--data-dir``). The resolved configuration is saved next to the checkpoints it produced.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import yaml

from mindresnet.fileio import write_text
from mindresnet.errors import ConfigError

LR_SCHEDULES = ("cosine", "onecycle", "step", "constant")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
DATASETS = ("cifar10", "folder")
OPTIMIZERS = ("momentum", "sgd")


@dataclass
class TrainConfig:
    """Defaults reproduce the MindSpore tutorial: pretrained ResNet-50, CIFAR-10, 5 epochs."""

    device: str = "CPU"                  # Ascend, GPU or CPU
    arch: str = "resnet50"               # any name of mindresnet.list_models()
    stem: str = "imagenet"               # imagenet (7x7/2 + pool) or cifar (3x3/1, no pool)
    pretrained: str = "true"             # true (download official weights), false, or a .ckpt path
    num_classes: Optional[int] = None    # classes of the head; unset: the dataset's class count
    dataset: str = "cifar10"             # cifar10 (binary files) or folder (root/train/<class>/...)
    data_dir: str = "datasets-cifar10-bin"  # CIFAR-10 binary folder (or its parent), or an image-folder root
    download: bool = True                # fetch CIFAR-10 when data_dir holds none
    image_size: int = 32                 # pixels per side fed to the model
    epochs: int = 5                      # training epochs
    batch_size: int = 256                # per device
    optimizer: str = "momentum"          # momentum (tutorial) or sgd (momentum + nesterov)
    lr: float = 1e-3                     # peak learning rate
    min_lr: float = 1e-5                 # floor of cosine / onecycle decay
    momentum: float = 0.9                # optimizer momentum
    lr_schedule: str = "cosine"          # cosine, onecycle, step or constant
    warmup_epochs: float = 0.0           # linear warm-up (onecycle: the rising part)
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    amp: str = "O0"                      # O0 float32; O1-O3 mixed precision with loss scaling
    loss_scale: float = 1024.0           # static loss scale used when amp != O0
    freeze_backbone: bool = False        # train only the fc head
    seed: int = 1
    ckpt_dir: str = "ckpt"
    resume: bool = False                 # continue from <ckpt_dir>/<arch>-last.ckpt
    eval_every: int = 1                  # evaluate (and maybe save best) every N epochs
    workers: Optional[int] = None        # data workers; None: the machine's cores
    max_steps_per_epoch: Optional[int] = None  # cap steps per epoch (smoke tests, benchmarks)
    sink: bool = True                    # dataset sinking on Ascend/GPU (ignored on CPU)
    config: Optional[str] = None         # a YAML file of these keys; flags override it

    def validate(self) -> "TrainConfig":
        """Check values against each other; raise ConfigError naming the flag."""
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.min_lr <= self.lr, f"--min-lr must be in [0, --lr], got {self.min_lr}"),
            (0 <= self.warmup_epochs < self.epochs,
             f"--warmup-epochs ({self.warmup_epochs}) must be >= 0 and smaller than --epochs ({self.epochs})"),
            (self.lr_schedule in LR_SCHEDULES, f"--lr-schedule must be one of {LR_SCHEDULES}"),
            (self.amp in AMP_LEVELS, f"--amp must be one of {AMP_LEVELS}"),
            (self.dataset in DATASETS, f"--dataset must be one of {DATASETS}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}"),
            (self.stem in ("imagenet", "cifar"), "--stem must be imagenet or cifar"),
            (self.image_size >= 32, f"--image-size must be >= 32, got {self.image_size}"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (self.eval_every >= 1, "--eval-every must be >= 1"),
            (self.num_classes is None or self.num_classes >= 1, "--num-classes must be >= 1"),
            (self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
             "--max-steps-per-epoch must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.pretrained_value()
        return self

    def pretrained_value(self):
        """``pretrained`` as True, False or a path string."""
        value = str(self.pretrained).strip()
        if value.lower() in ("true", "yes", "1"):
            return True
        if value.lower() in ("false", "no", "0", "none", ""):
            return False
        if not os.path.isfile(value):
            raise ConfigError(f"--pretrained {value}: no such file. Pass true, false or a .ckpt path.")
        return value

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _field_type(field: dataclasses.Field):
    default = field.default
    text = str(field.type)
    if isinstance(default, bool) or "bool" in text:
        return _parse_bool
    if "int" in text:
        return int
    if "float" in text:
        return float
    return str


def load_yaml(path: str) -> Dict[str, Any]:
    """Read a YAML config; keys may use ``-`` or ``_``. Unknown keys are an error naming the file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config {path}: no such file.")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc}).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of keys to values.")
    known = {f.name for f in fields(TrainConfig)}
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"--config {path}: unknown key {key!r}. Known keys: {', '.join(sorted(known))}.")
        values[name] = value
    return values


def field_help() -> Dict[str, str]:
    """The trailing comment of each TrainConfig field, used as its --help text."""
    source = inspect.getsource(TrainConfig)
    return dict(re.findall(r"^    (\w+): [^=]+=.*?#\s*(.+)$", source, flags=re.MULTILINE))


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per TrainConfig field (defaults suppressed, see parse_args)."""
    helps = field_help()
    parser = argparse.ArgumentParser(
        prog="python -m mindresnet.train",
        description="Train a ResNet in graph mode. Values: defaults < --config YAML < flags.")
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        parser.add_argument(flag, dest=field.name, type=_field_type(field), default=argparse.SUPPRESS,
                            metavar=field.name.upper(),
                            help=f"{helps.get(field.name, '')} (default: {default})")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """Resolve defaults, ``--config`` YAML and command-line flags into a validated TrainConfig."""
    cli = vars(build_parser().parse_args(argv))
    values: Dict[str, Any] = {}
    if cli.get("config"):
        values.update(load_yaml(cli["config"]))
    values.update(cli)
    try:
        config = TrainConfig(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    for field in fields(TrainConfig):  # YAML values arrive untyped
        value = getattr(config, field.name)
        if value is not None and not isinstance(value, bool) and _field_type(field) in (int, float):
            setattr(config, field.name, _field_type(field)(value))
    return config.validate()


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))

