"""Learning-rate range test (fastai's ``lr_find``): which ``--lr`` to train with.

``python -m mindresnet.lr_find [training flags] [--steps 100 --start-lr 1e-7 --end-lr 10]`` builds
the model, data and stage a training run of the same flags would (augmentation, mixing, class
weights, layer decay, frozen layers, ``--pretrained`` weights), then trains it for up to
``--steps`` steps while the learning rate rises exponentially from ``--start-lr`` to ``--end-lr``.
It stops once the smoothed loss exceeds 4 times its minimum (the loss diverged), writes the loss
per LR (``lr_find.csv``, ``lr_find.png``) and prints two suggestions from the smoothed loss, as
fastai does: ``valley`` (the middle of the longest stretch where the loss keeps falling, fastai's
default) and ``steep`` (where it falls fastest). The weights train in memory only: no checkpoint
is read for resuming or written.

Smith, "Cyclical Learning Rates for Training Neural Networks", 2017; fastai's ``LRFinder``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import mindspore as ms
import numpy as np

from mindresnet.cli import run_guarded
from mindresnet.data.factory import get_dataset_kind
from mindresnet.distributed import DistInfo
from mindresnet.errors import ConfigError
from mindresnet.fileio import atomic_path, save_figure
from mindresnet.models import create_model
from mindresnet.runtime import setup_context
from mindresnet.training import recipe
from mindresnet.training.config import TrainConfig, build_parser as build_train_parser, resolve_config
from mindresnet.training.loss import loss_for
from mindresnet.training.progress import epoch_batches
from mindresnet.training.run import build_datasets, resolve_val_split
from mindresnet.training.stages import build_stage

logger = logging.getLogger("mindresnet.lr_find")

STAGES = ("full", "head")
DIVERGE_FACTOR = 4.0  # stop when the smoothed loss exceeds this multiple of its minimum (fastai)
SMOOTHING = 0.98  # beta of the smoothed loss's moving average (fastai)
LR_FIND_FLAGS = ("steps", "start_lr", "end_lr", "stage", "out_dir")


@dataclass
class LRFindResult:
    """The sweep: base learning rate, loss and smoothed loss of every step, and the suggestions."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    valley: float
    steep: float
    diverged: bool  # stopped before ``steps`` because the loss diverged

    def summary(self) -> str:
        """One line: the suggestions and what was swept."""
        end = "loss diverged" if self.diverged else "all steps run"
        return (f"suggested --lr: {self.valley:.2e} (valley), {self.steep:.2e} (steepest descent); swept "
                f"{self.lrs[0]:.1e} .. {self.lrs[-1]:.1e} in {len(self.lrs)} steps ({end})")


def exponential_rates(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """``steps`` learning rates from ``start_lr`` to ``end_lr``, evenly spaced on a log scale."""
    return start_lr * (end_lr / start_lr) ** (np.arange(steps) / max(1, steps - 1))


def smooth(losses: Sequence[float], beta: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average of ``losses`` with bias correction (fastai's smoothed loss)."""
    average, smoothed = 0.0, []
    for count, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** count))
    return np.asarray(smoothed)


def suggest_steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The LR where ``losses`` falls fastest per log-LR (fastai's ``steep``)."""
    if len(lrs) < 2:
        return float(lrs[0])
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


def suggest_valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's ``valley``: in the longest decreasing run of ``losses``, the LR two thirds of the way down
    to where it ends."""
    count = len(losses)
    run = [1] * count  # longest decreasing subsequence ending at each step
    start = end = 0
    for i in range(1, count):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[end] < run[i]:
            end, start = i, i - run[i]
    sections = (end - start) / 3
    return float(lrs[min(count - 1, start + int(sections) + int(sections / 2))])


def trimmed(values: np.ndarray) -> np.ndarray:
    """``values`` without the first tenth and the last 5 steps, which fastai leaves out of its
    suggestions (warm-up noise, then the divergence itself), when enough steps remain."""
    head, tail = len(values) // 10, 5
    return values[head:len(values) - tail] if len(values) - head - tail >= 2 else values


def sweep_config(config: TrainConfig, stage: str, steps: int, out_dir: str) -> TrainConfig:
    """``config`` for a stage whose LR tables are constant at the stage's base rate times each group's
    own scale (layer decay, head scale), long enough for ``steps`` steps; :func:`lr_find` then
    replaces the base rate by the sweep. No EMA, top-k or early stop: nothing is evaluated or saved;
    the run's folder is ``out_dir``."""
    epochs = steps + 1  # at least one step per epoch
    return dataclasses.replace(config, ckpt_dir=str(out_dir), lr=1.0, min_lr=0.0, lr_schedule="constant", warmup_epochs=0.0, epochs=epochs,
                               freeze_epochs=steps if stage == "head" and not config.linear_probe else 0,
                               head_lr=None, ema=None, early_stop=None, keep_best=0, save_every_steps=None)


def step_losses(stage, seed: int) -> Iterator[float]:
    """The loss of each training step of ``stage`` (a :class:`~mindresnet.training.stages.Stage`),
    epoch after epoch, in the order a training run takes them."""
    for epoch in range(sys.maxsize):
        if stage.name == "head":
            for index in stage.trainer.epoch_order(stage.labels, epoch):
                yield stage.trainer.train_batch(stage.features[index], stage.labels[index])
            continue
        stage.train_step.set_train(True)
        for step, (images, labels) in enumerate(epoch_batches(stage.train_ds, seed, epoch)):
            if step >= stage.steps_per_epoch:
                break
            yield float(stage.train_step(images, labels).asnumpy())


def set_base_rates(optimizer, base: float, rates: np.ndarray) -> None:
    """Make every LR table of ``optimizer`` follow ``rates`` (then their last value) times its group's
    scale: the table's constant value divided by the stage's ``base`` rate."""
    tables = {id(table): table for table in optimizer.get_lr_parameter(list(optimizer.parameters))}
    for table in tables.values():
        values = table.asnumpy()
        padded = np.concatenate([rates, np.full(max(0, len(values) - len(rates)), rates[-1])])[:len(values)]
        table.set_data(ms.Tensor((values[0] / base * padded).astype(values.dtype)))


def lr_find(config: TrainConfig, steps: int = 100, start_lr: float = 1e-7, end_lr: float = 10.0,
            stage: Optional[str] = None, out_dir: str = "lr_find") -> LRFindResult:
    """Run the LR range test for ``config`` (the flags of the training run to tune).

    Args:
        config: a training configuration; its ``lr`` and schedule are replaced by the sweep.
        steps: most steps of the sweep (fewer when the loss diverges first).
        start_lr, end_lr: the base learning rate of the first and the last step.
        stage: ``full`` (every layer that the run trains after its head epochs; what ``--lr``
            sets) or ``head`` (the head-only epochs: ``--head-lr``, or ``--lr`` of a linear probe);
            default: ``head`` for ``--linear-probe``, else ``full``.
        out_dir: the sweep's folder (in place of ``--ckpt-dir``: an image folder's
            ``class_indices.json`` is written there, as a run writes it).

    Returns:
        An :class:`LRFindResult`. No checkpoint is read for resuming or written.
    """
    if steps < 2 or not 0 < start_lr < end_lr:
        raise ConfigError(f"lr_find needs --steps >= 2 and 0 < --start-lr < --end-lr, got {steps}, {start_lr}, "
                          f"{end_lr}")
    stage = stage or ("head" if config.linear_probe else "full")
    if stage not in STAGES:
        raise ConfigError(f"--stage must be one of {STAGES}, got {stage!r}")
    config.validate()
    setup_context(config.device)
    ms.set_seed(config.seed)
    np.random.seed(config.seed)
    swept = sweep_config(config, stage, steps, out_dir)
    dist = DistInfo()
    data = build_datasets(swept, dist, get_dataset_kind(swept.dataset).preprocess(swept.image_size),
                          resolve_val_split(swept))
    num_classes = config.num_classes or len(data.train.class_names)
    net = create_model(config.arch, num_classes=num_classes, pretrained=config.init_from or config.pretrained_value(),
                       stem=config.stem, drop_path=config.drop_path)
    trainer = build_stage(stage, 0, net, swept, dist, data.train, data.select, num_classes,
                          loss_for(swept, num_classes))
    base = recipe.head_stage_lr(swept)[0] if stage == "head" else swept.lr
    rates = exponential_rates(start_lr, end_lr, steps)
    set_base_rates(trainer.optimizer, base, rates)
    lrs: List[float] = []
    losses: List[float] = []
    diverged = False
    for loss in step_losses(trainer, config.seed):
        updates = trainer.global_step  # the last update used rates[updates - 1] (--grad-accum: none yet)
        lrs.append(float(rates[min(max(updates, 1), steps) - 1]))
        losses.append(loss)
        smoothed = smooth(losses)
        if not math.isfinite(loss) or smoothed[-1] > DIVERGE_FACTOR * smoothed.min():
            diverged = True
            break
        if updates >= steps:
            break
    lr_array, loss_array = np.asarray(lrs), np.asarray(losses)
    finite = np.isfinite(loss_array)
    smoothed = smooth(np.where(finite, loss_array, np.nanmax(np.where(finite, loss_array, np.nan))))
    kept_lrs, kept_losses = trimmed(lr_array), trimmed(smoothed)
    return LRFindResult(lr_array, loss_array, smoothed, suggest_valley(kept_lrs, kept_losses),
                        suggest_steep(kept_lrs, kept_losses), diverged)


def write_csv(result: LRFindResult, path: Path) -> Path:
    """``step, lr, loss, smoothed_loss`` per step, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr", "loss", "smoothed_loss"])
        for step, row in enumerate(zip(result.lrs, result.losses, result.smoothed), start=1):
            writer.writerow([step, *(f"{value:.6g}" for value in row)])
    return Path(path)


def plot(result: LRFindResult, path: Path) -> Path:
    """Loss and smoothed loss against the LR (log axis), the two suggestions marked; atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.3, label="loss")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", label="smoothed loss")
    for value, name, color in ((result.valley, "valley", "tab:green"), (result.steep, "steep", "tab:red")):
        ax.axvline(value, color=color, linestyle="--", label=f"{name} {value:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_ylim(top=min(np.nanmax(result.losses), DIVERGE_FACTOR * np.nanmin(result.smoothed)) * 1.05)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The training flags plus the sweep's own."""
    parser = build_train_parser()
    parser.prog = "python -m mindresnet.lr_find"
    parser.description = __doc__.split("\n")[0] + " Takes every training flag; --lr and its schedule are swept."
    group = parser.add_argument_group("LR range test")
    group.add_argument("--steps", type=int, default=100, help="most steps of the sweep (default: 100)")
    group.add_argument("--start-lr", type=float, default=1e-7, help="LR of the first step (default: 1e-7)")
    group.add_argument("--end-lr", type=float, default=10.0, help="LR of the last step (default: 10)")
    group.add_argument("--stage", choices=STAGES, default=None,
                       help="full: the layers --lr trains; head: the head-only epochs (--head-lr, or a linear "
                            "probe's --lr). Default: head for --linear-probe, else full")
    group.add_argument("--out-dir", default="lr_find", help="folder of lr_find.csv and lr_find.png (default: lr_find)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = vars(build_parser().parse_args(argv))
    options = {name: args.pop(name) for name in LR_FIND_FLAGS}

    def find() -> int:
        result = lr_find(resolve_config(args), options["steps"], options["start_lr"], options["end_lr"],
                         options["stage"], options["out_dir"])
        print(result.summary(), flush=True)
        folder = Path(options["out_dir"])
        print(f"wrote {write_csv(result, folder / 'lr_find.csv')} and {plot(result, folder / 'lr_find.png')}")
        return 0

    return run_guarded(find)


if __name__ == "__main__":
    sys.exit(main())
