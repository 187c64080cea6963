"""Training configuration: dataclass defaults, then a YAML file, then command-line flags.

:class:`TrainConfig` is composed of typed sections (:data:`SECTIONS`: model, data, optimizer,
schedule, fine-tuning recipe, run), each with the checks of its own values; flags and YAML keys
stay flat. Every field is a YAML key (``data_dir`` or ``data-dir``) and a flag
(``--data-dir`` or ``--data_dir``); its help text, type and the names timm and MindCV give it
(``aliases``: flags, and YAML keys translated with a log note) live in the field itself
(:func:`option`). YAML values and flag values go through the same conversion (:func:`convert_value`).
The resolved configuration is saved next to the checkpoints it produced. A new flag is one new field here.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from mindresnet.data.constants import MAX_IMAGE_SIZE
from mindresnet.data.factory import DATASETS
from mindresnet.data.transforms import AUTO_AUGMENTS
from mindresnet.errors import ConfigError
from mindresnet.fileio import write_text
from mindresnet.models.pretrained import parse_pretrained
from mindresnet.models.registry import VARIANTS
from mindresnet.models.resnet import STEMS
from mindresnet.parsing import FALSE_WORDS, NONE_WORDS, TRUE_WORDS, AliasParser, add_bool_flag, parse_bool
from mindresnet.runtime import normalize_device
from mindresnet.training import recipe
from mindresnet.training.optim import OPTIMIZERS
from mindresnet.training.schedule import LR_SCHEDULES

AMP_LEVELS = ("O0", "O1", "O2", "O3")
BALANCED = "balanced"  # the one value of --class-weights and --sampler
EMA_DECAY = 0.9999  # --ema given as true (MindCV's --ema, timm's --model-ema): MindCV's default decay
CLIP_NORM = 15.0  # --clip-grad given as true (MindCV's clip_grad: True): MindCV's default clip_value

logger = logging.getLogger("mindresnet.training.config")

Check = Tuple[bool, str]  # (holds, the message naming the flag when it does not)


def option(default: Any, help_text: str, aliases: Tuple[str, ...] = (), switch: Any = None) -> Any:
    """A TrainConfig field with its ``--help`` text and the flags timm and MindCV give it (``aliases``).

    ``switch``: the value that a boolean true (a bare flag, ``true``) means; false means None (off).
    A list ``default`` makes a repeatable flag.
    """
    metadata = {"help": help_text, "aliases": aliases, "switch": switch}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class ModelOptions:
    """The network: its variant, weights and device."""

    device: str = option("CPU", "Ascend, GPU or CPU")
    arch: str = option("resnet50", "any name of mindresnet.list_models()", aliases=("--model",))
    stem: str = option("imagenet", "imagenet (7x7/2 conv + max-pool) or cifar (3x3/1 conv, no pool)")
    pretrained: str = option("true", "true (download the published weights), false, a weights tag of --arch "
                                     "(e.g. mindcv), or a .ckpt/.pth/.pt/.safetensors file")
    num_classes: Optional[int] = option(None, "classes of the head; unset: the dataset's class count")
    drop_path: float = option(0.0, "stochastic depth: drop rate of the last residual block, rising linearly from 0 "
                                   "over the blocks (timm's --drop-path); training only; 0: off",
                              aliases=("--drop_path_rate",))
    allow_partial: bool = option(False, "let --pretrained weights hold tensors this --arch does not have (they "
                                        "are ignored); unset: such a file is refused")

    def wants_pretrained(self) -> bool:
        """Whether ``pretrained`` asks for weights at all (anything but false/none)."""
        return self.pretrained_value() is not False

    def pretrained_value(self) -> Union[bool, str]:
        """``pretrained`` as True, False, a published weights tag of ``arch``, or a file path
        (:func:`~mindresnet.models.pretrained.parse_pretrained`)."""
        return parse_pretrained(self.pretrained, self.arch)

    def checks(self) -> List[Check]:
        return [
            (self.arch in VARIANTS, f"--arch {self.arch!r} is not one of {', '.join(sorted(VARIANTS))}"),
            (self.stem in STEMS, f"--stem must be one of {STEMS}"),
            (self.num_classes is None or self.num_classes >= 1, "--num-classes must be >= 1"),
            (0 <= self.drop_path < 1, f"--drop-path must be in [0, 1), got {self.drop_path}"),
        ]


@dataclass
class DataOptions:
    """The images: dataset, split, batches and augmentation."""

    dataset: str = option("cifar10", f"one of {', '.join(DATASETS)}")
    data_dir: str = option("datasets-cifar10-bin",
                           "CIFAR-10 binary folder (or its parent), or an image-folder root")
    download: bool = option(True, "fetch CIFAR-10 when --data-dir holds none", aliases=("--dataset_download",))
    image_size: int = option(32, "pixels per side fed to the model", aliases=("--img-size", "--image_resize"))
    batch_size: int = option(256, "images per step on each device")
    workers: Optional[int] = option(None, "data pipeline workers; unset: the machine's cores",
                                    aliases=("--num_parallel_workers",))
    val_split: Optional[float] = option(None, "fraction of the training images held out (stratified, seeded by "
                                              "--seed) to pick the best checkpoint, cut the plateau LR and stop "
                                              "early; the test split is then scored once, at the end. Unset: 0 for "
                                              "CIFAR-10 (its test split picks, as in the tutorial), 0.1 for image "
                                              "folders without val/")
    auto_augment: Optional[str] = option(None, "randaugment or autoaugment (MindSpore's ops) after the crop and "
                                               "flip of training images; unset: off")
    color_jitter: float = option(0.0, "colour jitter strength S: brightness, contrast and saturation of training "
                                      "images each scaled by a random factor in [1-S, 1+S] (RandomColorAdjust); 0: off")
    reprob: float = option(0.0, "random erasing: probability that a training image gets a random rectangle erased "
                                "(MindSpore's RandomErasing, after normalisation); 0: off", aliases=("--re_prob",))
    mixup: float = option(0.0, "MixUp alpha (soft targets); 0: off")
    cutmix: float = option(0.0, "CutMix alpha (soft targets); 0: off. With --mixup: one of the two per batch")
    sampler: Optional[str] = option(None, "balanced: each epoch draws its images by picking a class uniformly, then "
                                          "one of its images (with replacement); unset: a shuffle")

    def checks(self) -> List[Check]:
        return [
            (self.dataset in DATASETS, f"--dataset must be one of {tuple(DATASETS)}"),
            (32 <= self.image_size <= MAX_IMAGE_SIZE,
             f"--image-size must be in [32, {MAX_IMAGE_SIZE}], got {self.image_size}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.workers is None or self.workers >= 1, f"--workers must be >= 1, got {self.workers}"),
            (self.val_split is None or 0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}"),
            (self.auto_augment is None or self.auto_augment in AUTO_AUGMENTS,
             f"--auto-augment must be one of {AUTO_AUGMENTS}, got {self.auto_augment!r}"),
            (0 <= self.color_jitter <= 1, f"--color-jitter must be in [0, 1], got {self.color_jitter}"),
            (0 <= self.reprob <= 1, f"--reprob must be in [0, 1], got {self.reprob}"),
            (self.mixup >= 0 and self.cutmix >= 0, "--mixup and --cutmix must be >= 0"),
            (self.sampler in (None, BALANCED), f"--sampler must be {BALANCED}, got {self.sampler!r}"),
        ]


@dataclass
class OptimizerOptions:
    """The update: optimizer, rates per layer, loss, precision, averaging."""

    optimizer: str = option("momentum", "momentum (the tutorial's), sgd (momentum + Nesterov) or adamw "
                                        "(decoupled weight decay)", aliases=("--opt",))
    lr: float = option(1e-3, "peak learning rate")
    min_lr: float = option(1e-5, "floor of the cosine / onecycle decay")
    momentum: float = option(0.9, "optimizer momentum")
    weight_decay: float = option(0.0, "weight decay (BatchNorm gamma/beta and biases excluded)")
    layer_decay: float = option(1.0, "LR multiplier per stage away from the head (timm's --layer-decay): "
                                     "layer4 x D, layer3 x D^2, ... stem x D^5")
    head_lr_scale: float = option(1.0, "LR multiplier of the fc head")
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy, in [0, 1)", aliases=("--smoothing",))
    class_weights: Optional[str] = option(None, "balanced: weight each class in the loss by images / (classes x its "
                                                "images) of the images trained on (less --val-split); unset: off")
    grad_accum: int = option(1, "micro-batches of --batch-size averaged into one update")
    clip_grad: Optional[float] = option(None, "clip each update's gradient to this global L2 norm; bare or true: "
                                              f"{CLIP_NORM}; unset: off", aliases=("--clip_value",), switch=CLIP_NORM)
    amp: str = option("O0", "O0 float32; O1-O3 mixed precision with loss scaling", aliases=("--amp_level",))
    loss_scale: float = option(1024.0, "static loss scale used when --amp is not O0")
    ema: Optional[float] = option(None, "decay of an exponential moving average of the weights (e.g. 0.999), "
                                        f"used for evaluation and the best checkpoint; bare or true: {EMA_DECAY}; "
                                        "unset: off", aliases=("--model-ema", "--model-ema-decay", "--ema_decay"),
                                  switch=EMA_DECAY)

    def checks(self) -> List[Check]:
        return [
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.min_lr <= self.lr, f"--min-lr must be in [0, --lr], got {self.min_lr}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (0 < self.layer_decay <= 1, f"--layer-decay must be in (0, 1], got {self.layer_decay}"),
            (self.head_lr_scale > 0, f"--head-lr-scale must be > 0, got {self.head_lr_scale}"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.class_weights in (None, BALANCED), f"--class-weights must be {BALANCED}, got {self.class_weights!r}"),
            (self.grad_accum >= 1, f"--grad-accum must be >= 1, got {self.grad_accum}"),
            (self.clip_grad is None or self.clip_grad > 0, "--clip-grad must be > 0"),
            (self.amp in AMP_LEVELS, f"--amp must be one of {AMP_LEVELS}"),
            (self.loss_scale > 0, f"--loss-scale must be > 0, got {self.loss_scale}"),
            (self.ema is None or 0 < self.ema < 1, f"--ema must be in (0, 1), got {self.ema}"),
        ]


@dataclass
class ScheduleOptions:
    """How long and how fast: epochs, the LR schedule, evaluations and what they decide."""

    epochs: int = option(5, "training epochs", aliases=("--epoch_size",))
    lr_schedule: str = option("cosine", "cosine (a new rate every step), cosine_epoch (one rate per epoch, as "
                                        "the tutorial's nn.cosine_decay_lr), onecycle, step, constant, or plateau "
                                        "(constant; x0.1 after --plateau-patience evaluations without a better "
                                        "accuracy)", aliases=("--sched", "--scheduler", "--lr_scheduler"))
    warmup_epochs: float = option(0.0, "epochs of linear warm-up (onecycle: the rising part)")
    plateau_patience: int = option(2, "evaluations (every --eval-every epochs) without improvement before "
                                      "--lr-schedule plateau lowers the LR")
    eval_every: int = option(1, "evaluate (and maybe save the best checkpoint) every N epochs",
                             aliases=("--val_interval",))
    early_stop: Optional[int] = option(None, "stop after N evaluations without a better validation accuracy; "
                                             "unset: off")
    max_steps_per_epoch: Optional[int] = option(None, "cap steps per epoch (smoke tests, benchmarks)")

    def checks(self) -> List[Check]:
        return [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.lr_schedule in LR_SCHEDULES, f"--lr-schedule must be one of {LR_SCHEDULES}"),
            (0 <= self.warmup_epochs < self.epochs,
             f"--warmup-epochs ({self.warmup_epochs}) must be >= 0 and smaller than --epochs ({self.epochs})"),
            (self.plateau_patience >= 1, "--plateau-patience must be >= 1"),
            (self.eval_every >= 1, "--eval-every must be >= 1"),
            (self.early_stop is None or self.early_stop >= 1, "--early-stop must be >= 1"),
            (self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
             "--max-steps-per-epoch must be >= 1"),
        ]


@dataclass
class FineTuneOptions:
    """The fine-tuning recipe (:mod:`mindresnet.training.recipe`): which layers train when."""

    freeze_backbone: bool = option(False, "train only the fc head; the backbone's BatchNorm stays in inference mode")
    linear_probe: bool = option(False, "train only the fc head, on backbone features of the un-augmented images "
                                       "computed once (eval-mode BatchNorm); writes normal full-model checkpoints")
    freeze_epochs: Optional[int] = option(None, "two-stage fine-tune: the first N of --epochs train only the head "
                                                "as --linear-probe does, at --head-lr; then every layer, at --lr. "
                                                "Unset: 1 for --pretrained runs of 2+ epochs that train every "
                                                "layer (fastai's fine_tune), else 0")
    head_lr: Optional[float] = option(None, "peak LR of the head-only epochs of --freeze-epochs; unset: 5 x --lr")

    def checks(self) -> List[Check]:
        return [(self.head_lr is None or self.head_lr > 0, f"--head-lr must be > 0, got {self.head_lr}")]


@dataclass
class RunOptions:
    """The run's folder, seed, resumption, checkpoints, log and plug-ins."""

    seed: int = option(1, "random seed of initialisation, shuffling and augmentation")
    ckpt_dir: str = option("ckpt", "folder of checkpoints, metrics, curves, train.log and the resolved config",
                           aliases=("--ckpt_save_dir",))
    resume: str = option("false", "true: continue <ckpt-dir>/<arch>-last.ckpt; a PATH (a run's checkpoint, or its "
                                  "folder): continue that run, in that folder; false: start a new run")
    init_from: Optional[str] = option(None, "start a new run from the weights of a checkpoint written by training: "
                                            "its --arch, --stem and head, no optimizer state or epoch; --pretrained "
                                            "is not used; unset: off")
    keep_best: int = option(0, "also keep the K best checkpoints, ranked: <arch>-top1.ckpt ... -topK.ckpt")
    save_every_steps: Optional[int] = option(None, "also write <arch>-last.ckpt every N steps (bounds what a "
                                                   "SIGKILL loses); unset: at epoch ends and on SIGTERM/Ctrl-C")
    overwrite: bool = option(False, "start a new run in a --ckpt-dir that holds an earlier run's results, after "
                                    "moving them into its previous-<time>/ subfolder (kept, not deleted)")
    log_interval: Optional[int] = option(None, "when output is not a terminal, log a progress line every N steps "
                                               "instead of the progress bar's every 30 s; unset: the bar")
    callback: List[str] = option([], "a mindspore.train.Callback to call during training, as module:Class (built "
                                     "without arguments); repeatable")
    config: Optional[str] = option(None, "a YAML file of these keys; flags override it")


    def checks(self) -> List[Check]:
        return [
            (self.keep_best >= 0, "--keep-best must be >= 0"),
            (self.save_every_steps is None or self.save_every_steps >= 1, "--save-every-steps must be >= 1"),
            (self.log_interval is None or self.log_interval >= 1, "--log-interval must be >= 1"),
        ]


SECTIONS = {"model": ModelOptions, "data": DataOptions, "optimizer": OptimizerOptions, "schedule": ScheduleOptions,
            "fine-tuning": FineTuneOptions, "run": RunOptions}  # --help shows the flags in these groups


@dataclass
class TrainConfig(RunOptions, FineTuneOptions, ScheduleOptions, OptimizerOptions, DataOptions, ModelOptions):
    """Every training option, flat (``config.lr``), composed of the typed sections above; functions that
    need one section take it (``OptimizerOptions``...). Defaults reproduce the MindSpore tutorial's job
    (pretrained ResNet-50, CIFAR-10, 5 epochs), with the head trained alone in the first epoch
    (:mod:`mindresnet.training.recipe`)."""

    def validate(self) -> "TrainConfig":
        """Fill in the defaults that depend on other flags (:func:`~mindresnet.training.recipe.fill_defaults`);
        check each section's values, then the recipe's (:func:`~mindresnet.training.recipe.checks`); raise
        ConfigError naming the flag."""
        self._check_run_sources()
        recipe.fill_defaults(self)
        checks = [(math.isfinite(getattr(self, f.name)), f"{flag_name(f.name)} must be a finite number, got "
                   f"{getattr(self, f.name)}") for f in fields(self) if isinstance(getattr(self, f.name), float)]
        for section in SECTIONS.values():
            checks += section.checks(self)
        for ok, message in checks + recipe.checks(self):
            if not ok:
                raise ConfigError(message)
        self.device = normalize_device(self.device)
        self.pretrained_value()
        return self

    def _check_run_sources(self) -> None:
        """Normalise --resume (true, false or a path) and --init-from; a run resumed from a path
        writes into the folder of its checkpoint."""
        value = str(self.resume).strip()
        if value.lower() in TRUE_WORDS + FALSE_WORDS + NONE_WORDS:
            self.resume = "true" if value.lower() in TRUE_WORDS else "false"
        else:
            path = Path(value).expanduser()
            if not path.exists():
                raise ConfigError(f"--resume {value}: no such checkpoint or run folder. Pass the path of a run's "
                                  "checkpoint (or its folder), or true to continue <ckpt-dir>/<arch>-last.ckpt.")
            folder = path if path.is_dir() else path.parent
            if self.ckpt_dir == TrainConfig.ckpt_dir:  # unset: the run's own folder
                self.ckpt_dir = str(folder)
            elif Path(self.ckpt_dir).resolve() != folder.resolve():
                raise ConfigError(f"--resume {value} continues the run in {folder}, but --ckpt-dir is "
                                  f"{self.ckpt_dir}. Drop --ckpt-dir, or start a new run there from its weights "
                                  f"with --init-from {value}.")
        if self.init_from:
            if not Path(self.init_from).is_file():
                raise ConfigError(f"--init-from {self.init_from}: no such checkpoint file.")
            if not isinstance(self.pretrained_value(), bool):
                raise ConfigError(f"--init-from takes the weights of {self.init_from}: drop --pretrained "
                                  f"{self.pretrained}.")
            self.pretrained = "false"

    def resume_checkpoint(self) -> Optional[Path]:
        """The checkpoint that ``--resume`` continues, or None for a new run (after :meth:`validate`)."""
        if self.resume == "false":
            return None
        path = Path(self.resume)
        if self.resume == "true" or path.is_dir():
            return Path(self.ckpt_dir) / f"{self.arch}-last.ckpt"
        return path

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def field_type(field: dataclasses.Field) -> type:
    """The field's value type: bool, int, float or str (``Optional`` unwrapped)."""
    hint = typing.get_type_hints(TrainConfig)[field.name]
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if args else hint


def convert_value(field: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` (from YAML or a flag) as the field's type; ConfigError naming ``where`` otherwise."""
    if typing.get_origin(typing.get_type_hints(TrainConfig)[field.name]) is list:
        return [str(item) for item in (value if isinstance(value, list) else [] if value is None else [value])]
    kind = field_type(field)
    optional = field.default is None
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in NONE_WORDS):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required.")
    try:
        if kind is bool:
            return parse_bool(value)
        if kind is str and isinstance(value, bool):  # YAML's `pretrained: true`
            return str(value).lower()
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("not a whole number")
        if kind is float and not math.isfinite(float(value)):
            raise ValueError("not a finite number")
        return kind(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{where}: {value!r} is not a valid {kind.__name__} ({exc}).") from None


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def flag_spellings(field: dataclasses.Field) -> List[str]:
    """The flags of ``field``: ``--its-name``, ``--its_name`` (MindCV's style), then its ``aliases``."""
    own = flag_name(field.name)
    return [own] + (["--" + field.name] if "_" in field.name else []) + list(field.metadata["aliases"])


def alias_keys() -> Dict[str, str]:
    """YAML keys of timm and MindCV (the ``aliases`` of each field, as ``a_key``) -> mindresnet's field names."""
    return {alias.lstrip("-").replace("-", "_"): field.name for field in fields(TrainConfig)
            for alias in field.metadata["aliases"]}


def load_yaml(path: str) -> Dict[str, Any]:
    """Read a YAML config; keys may use ``-`` or ``_``, and timm's or MindCV's names (translated, with a log
    note); values converted as flags are.

    Raises:
        ConfigError: missing file, bad YAML, unknown key or bad value (naming the file and key).
    """
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"--config {path} is a folder; pass the YAML file in it.")
    if not file.is_file():
        raise ConfigError(f"--config {path}: no such file.")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not a text file (not UTF-8); pass a YAML file.") from None
    except OSError as exc:
        raise ConfigError(f"--config {path} cannot be read: {exc.strerror or exc}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc}).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of keys to values.")
    known = {f.name: f for f in fields(TrainConfig)}
    aliases = alias_keys()
    given: Dict[str, List[Tuple[str, Any]]] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known and name in aliases:
            logger.info("--config %s: key %r is mindresnet's %s", path, key, aliases[name])
            name = aliases[name]
        if name not in known:
            raise ConfigError(f"--config {path}: unknown key {key!r}. Known keys: {', '.join(sorted(known))}.")
        given.setdefault(name, []).append((key, value))
    values = {}
    for name, entries in given.items():
        field = known[name]
        spots = [(f"--config {path}: key {key!r}", value) for key, value in entries]
        if field.metadata["switch"] is not None:
            values[name] = switch_value(field, spots)
        elif len(entries) > 1:
            raise ConfigError(f"--config {path}: keys {', '.join(repr(key) for key, _ in entries)} all set "
                              f"{flag_name(name)}; keep one.")
        else:
            where, value = spots[0]
            values[name] = convert_value(field, value, where)
    return values


def switch_value(field: dataclasses.Field, spots: Sequence[Tuple[str, Any]]) -> Any:
    """The value of a switch field (``--ema``, ``--clip-grad``) given under several names, as (where, raw value)
    pairs: a boolean turns it on or off, a number sets its value, and off wins (MindCV's ``ema: False`` beside
    its ``ema_decay: 0.9999`` leaves EMA off; ``ema: True`` beside ``ema_decay: 0.999`` means 0.999)."""
    on, number = None, None
    for where, raw in spots:
        word = str(raw).strip().lower()
        if raw is None or word in NONE_WORDS:
            on = False
        elif isinstance(raw, bool) or word in TRUE_WORDS + FALSE_WORDS:
            on = parse_bool(raw)
        else:
            number = convert_value(field, raw, where)
    if on is False:
        return None
    return number if number is not None else field.metadata["switch"]


def add_flag(group, field: dataclasses.Field) -> None:
    """The flag of ``field`` (all its spellings) in the argparse ``group``; its value stays raw."""
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    help_text = f"{field.metadata['help']} (default: {default})"
    spellings = flag_spellings(field)
    if field_type(field) is bool:
        add_bool_flag(group, spellings[0], field.name, argparse.SUPPRESS, help_text, aliases=spellings[1:])
    elif field.name in ("pretrained", "resume"):  # a boolean that also takes a path
        group.add_argument(spellings[0], dest=field.name, nargs="?", const="true", default=argparse.SUPPRESS,
                           metavar="true|false|PATH", help=help_text)
        group.add_argument("--no-" + spellings[0][2:], dest=field.name, action="store_const", const="false",
                           default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    elif isinstance(default, list):
        group.add_argument(*spellings, dest=field.name, action="append", default=argparse.SUPPRESS,
                           metavar=field.name.upper(), help=help_text)
    elif field.metadata["switch"] is not None:  # every spelling's value kept: see switch_value
        group.add_argument(*spellings, dest=field.name, nargs="?", const="true", action="append",
                           default=argparse.SUPPRESS, metavar=field.name.upper(), help=help_text)
    else:
        group.add_argument(*spellings, dest=field.name, default=argparse.SUPPRESS, metavar=field.name.upper(),
                           help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per TrainConfig field; values stay raw until :func:`parse_args`."""
    parser = AliasParser(
        prog="python -m mindresnet.train",
        description="Train a ResNet in graph mode. Values: defaults < --config YAML < flags. "
                    "Boolean flags: --flag, --no-flag or --flag true|false. Each flag also takes MindCV's "
                    "spelling (--data_dir) and the names timm and MindCV give it (--model, --opt, ...).")
    for title, section in SECTIONS.items():
        group = parser.add_argument_group(title, section.__doc__)
        for field in fields(section):
            add_flag(group, field)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """Resolve defaults, ``--config`` YAML and command-line flags into a validated TrainConfig."""
    return resolve_config(vars(build_parser().parse_args(argv)))


def resolve_config(cli: Dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from the raw flag values of :func:`build_parser` (flags not given are
    absent), over ``--config`` YAML, over the defaults; for tools that add flags of their own."""
    known = {f.name: f for f in fields(TrainConfig)}
    values: Dict[str, Any] = {}
    if cli.get("config"):
        values.update(load_yaml(cli["config"]))
    for name, value in cli.items():
        field = known[name]
        if field.metadata["switch"] is not None:
            values[name] = switch_value(field, [(flag_name(name), item) for item in value])
        else:
            values[name] = convert_value(field, value, flag_name(name))
    return TrainConfig(**values).validate()


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
