"""Graph-mode training with best/last checkpoints, resume, metrics and curves.

``python -m mindresnet.train [flags]`` (``scripts/run_train.sh`` wraps it) is a thin CLI over
:func:`fit`. Defaults reproduce the MindSpore ResNet50 tutorial's transfer learning.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from tqdm import tqdm

from mindresnet import __version__, engine, finetune
from mindresnet.checkpoint import assign_parameters, save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.cli import run_guarded
from mindresnet.config import TrainConfig, parse_args, save_config
from mindresnet.data.constants import CLASS_INDICES_FILE
from mindresnet.data.transforms import mix_batches
from mindresnet.data.factory import LoadedDataset, create_dataset
from mindresnet.distributed import DistInfo, init_distributed, rank_weights_path
from mindresnet.errors import CheckpointError, ConfigError, TrainingDiverged
from mindresnet.metrics_log import plot_training_curves, read_metrics, write_metrics
from mindresnet.models import create_model
from mindresnet.preemption import EpochProgress, StopSignals, epoch_batches, read_resume_checkpoint
from mindresnet.runtime import setup_context

logger = logging.getLogger("mindresnet.train")

SCHEDULE_PARAMS = ("learning_rate", "momentum")  # prefixes of optimizer entries that the config, not the checkpoint, sets (per-group rates: learning_rate_group_<i>)
RESUME_MUST_MATCH = ("arch", "num_classes", "stem", "convention", "image_size")


@dataclass
class FitResult:
    """Outcome of :func:`fit`."""

    best_accuracy: float
    best_path: Optional[Path]
    last_path: Path
    epochs_run: int
    global_step: int
    history: List[Dict[str, float]] = field(default_factory=list)


def build_datasets(config: TrainConfig, dist: DistInfo) -> Tuple[LoadedDataset, LoadedDataset]:
    """(train split sharded for this rank, eval split) of ``config.dataset``."""
    common = dict(image_size=config.image_size, batch_size=config.batch_size, workers=config.workers)
    train = create_dataset(config.dataset, config.data_dir, "train", num_shards=dist.shards, shard_id=dist.shard_id,
                           download=config.download,
                           class_indices_path=Path(config.ckpt_dir) / CLASS_INDICES_FILE if dist.is_main else None,
                           **common)
    return train, create_dataset(config.dataset, config.data_dir, "eval", **common)


def checkpoint_paths(config: TrainConfig) -> Tuple[Path, Path]:
    """(best, last) checkpoint paths of this run."""
    folder = Path(config.ckpt_dir)
    return folder / f"{config.arch}-best.ckpt", folder / f"{config.arch}-last.ckpt"


def fit(config: TrainConfig) -> FitResult:
    """Train ``config.arch`` on ``config.dataset``; keep the best and the last checkpoint.

    Returns:
        A FitResult with the best accuracy, checkpoint paths and per-epoch history.

    Raises:
        ConfigError, DeviceError, CheckpointError, DataError: bad input, named in the message.
        TrainingDiverged: the loss became NaN/inf (the best checkpoint is left untouched).
        Preempted: SIGTERM or SIGINT (a KeyboardInterrupt), after saving ``<arch>-last.ckpt`` at the
            last whole step for ``--resume``.
    """
    config.validate()
    target = setup_context(config.device)
    dist = init_distributed()
    ms.set_seed(config.seed)
    np.random.seed(config.seed)
    ckpt_dir = Path(config.ckpt_dir)
    best_path, last_path = checkpoint_paths(config)
    if not config.resume and last_path.exists() and dist.is_main:
        raise ConfigError(f"{last_path} already exists from an earlier run. Pass --resume true to continue it, "
                          "or --ckpt-dir <new folder> to start a new run without touching it.")
    train, test = build_datasets(config, dist)
    train_ds, test_ds, class_names = train.pipeline, test.pipeline, train.class_names
    num_classes = config.num_classes or len(class_names)
    if num_classes != len(class_names):
        raise ConfigError(f"--num-classes {num_classes} does not match the {len(class_names)} classes of "
                          f"{config.data_dir}. Omit --num-classes to use the dataset's.")
    net = create_model(config.arch, num_classes=num_classes, pretrained=config.pretrained_value(), stem=config.stem)
    if config.freeze_backbone:
        finetune.freeze_backbone(net)
    train_ds = mix_batches(train_ds, num_classes, config.mixup, config.cutmix)
    steps_per_epoch = train_ds.get_dataset_size()
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than the training set of this rank; "
                          "lower --batch-size.")
    updates_per_epoch = engine.updates_per_epoch(steps_per_epoch, config.grad_accum)
    rates = engine.lr_schedule(config.lr_schedule, config.lr, config.min_lr, config.epochs, updates_per_epoch,
                               config.warmup_epochs)
    optimizer = finetune.optimizer_for(net, config, rates)
    ema = finetune.EMA(net, config.ema) if config.ema else None
    train_step = engine.build_train_step(net, engine.build_loss(config.label_smoothing), optimizer, config.amp,
                                         config.loss_scale, grad_accum=config.grad_accum, clip_grad=config.clip_grad,
                                         ema=ema, steps_per_epoch=steps_per_epoch)
    watch = engine.AccuracyWatch(optimizer, config.plateau_patience if config.lr_schedule == "plateau" else None,
                                 config.early_stop, config.min_lr)
    top_k = engine.TopKCheckpoints(ckpt_dir, config.arch, config.keep_best) if config.keep_best else None
    meta = CheckpointMeta(arch=config.arch, num_classes=num_classes, stem=config.stem, image_size=config.image_size,
                          mean=tuple(train.mean), std=tuple(train.std), class_names=list(class_names),
                          dataset=config.dataset, convention=net.convention, mindresnet=__version__)
    start_epoch, best_acc, history, progress = 0, -1.0, [], EpochProgress()
    if config.resume:
        start_epoch, best_acc, progress = restore(train_step, optimizer, last_path, meta, steps_per_epoch,
                                                  config.grad_accum)
        history = [row for row in read_metrics(ckpt_dir / "metrics.csv") if row["epoch"] <= start_epoch]
        watch.replay(row.get("accuracy", math.nan) for row in history)
    if dist.is_main:
        save_config(config, ckpt_dir / "config.yaml")
    global_images = config.batch_size * dist.shards
    logger.info("training %s on %s (%s): %d epochs x %d steps, global batch %d, rank %d of %d",
                config.arch, target, config.dataset, config.epochs, steps_per_epoch, global_images,
                dist.rank, dist.shards)

    def save_last(epochs_done: int, progress: EpochProgress = EpochProgress()) -> None:
        if dist.is_main:
            save_checkpoint(train_step.get_parameters(), last_path, meta.replace(
                epoch=epochs_done, best_accuracy=best_acc, step=progress.step, epoch_loss_sum=progress.loss_sum,
                epoch_seconds=progress.seconds), keep_backup=True)
        elif (rank_copy := rank_weights_path(last_path, dist)) is not None:  # test hook, see distributed.py
            save_checkpoint(train_step.get_parameters(), rank_copy, meta.replace(epoch=epochs_done, rank=dist.rank))

    with StopSignals(leader=dist.is_main) as stop:
        for epoch in range(start_epoch, config.epochs):
            stop_early = False
            try:
                run_epoch(train_step, train_ds, steps_per_epoch, epoch, config, dist, progress, stop,
                          lambda: save_last(epoch, progress))
                row = {"epoch": epoch + 1, "loss": progress.loss_sum / steps_per_epoch,
                       **finetune.lr_columns(optimizer, net), "seconds": progress.seconds,
                       "images_per_s": steps_per_epoch * global_images / progress.seconds}
                if dist.is_main and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
                    with stop.abortable(), finetune.evaluation_weights(ema):  # EMA: the averaged weights
                        scores = engine.evaluate(net, test_ds)
                        scored = meta.replace(epoch=epoch + 1, accuracy=scores["accuracy"])
                        if scores["accuracy"] > best_acc:
                            best_acc = scores["accuracy"]
                            save_checkpoint(net, best_path, scored)
                        if top_k is not None:
                            top_k.offer(scores["accuracy"], lambda path: save_checkpoint(net, path, scored))
                    train_step.set_train(True)
                    row.update(accuracy=scores["accuracy"], top5=scores["top5"], eval_loss=scores["loss"])
                    stop_early = watch.observe(scores["accuracy"])
            except KeyboardInterrupt:  # Preempted, or Ctrl-C where no handler could be installed
                save_last(epoch, progress)
                logger.warning("interrupted at epoch %d, step %d: saved %s (continue with --resume)",
                               epoch + 1, progress.step, last_path)
                raise
            history.append(row)
            progress = EpochProgress()
            save_last(epoch + 1)
            if dist.is_main:
                write_metrics(history, ckpt_dir / "metrics.csv")
                plot_training_curves(history, ckpt_dir / "training_curves.png")
                logger.info("epoch %d/%d loss %.4f acc %s lr %.2e %.1fs %.1f img/s", epoch + 1, config.epochs,
                            row["loss"], f"{row['accuracy']:.4f}" if "accuracy" in row else "-", row["lr"],
                            row["seconds"], row["images_per_s"])
            if stop_early:
                logger.info("early stop: no better test accuracy in %d evaluations", config.early_stop)
                break
    return FitResult(best_accuracy=best_acc, best_path=best_path if best_path.exists() else None,
                     last_path=last_path, epochs_run=len(history) - start_epoch,
                     global_step=int(optimizer.global_step.asnumpy().reshape(-1)[0]), history=history)


def run_epoch(train_step, dataset, steps: int, epoch: int, config: TrainConfig, dist: DistInfo,
              progress: EpochProgress, stop: StopSignals, save_last: Callable[[], None]) -> None:
    """Train ``epoch`` from step ``progress.step`` to ``steps``, updating ``progress`` after each step.

    Stops with Preempted at a step boundary once ``stop`` has a signal; calls ``save_last`` every
    ``config.save_every_steps`` global steps. Raises TrainingDiverged on a NaN/inf loss.
    """
    train_step.set_train(True)
    start = time.perf_counter() - progress.seconds
    bar = tqdm(total=steps, initial=progress.step, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
               leave=False, disable=not dist.is_main, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30)  # keep logs of non-interactive runs short
    images_per_step = config.batch_size * dist.shards
    batches = epoch_batches(dataset, config.seed, epoch, skip=progress.step)
    with bar:
        for images, labels in batches:
            if progress.step >= steps:
                break
            loss = float(train_step(images, labels).asnumpy())
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss} at epoch {epoch + 1}, step {progress.step + 1}: training diverged. "
                    f"Lower --lr (now {config.lr}) or use --amp O0; the best checkpoint so far is untouched.")
            progress.step += 1
            progress.loss_sum += loss
            progress.seconds = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{progress.step * images_per_step / progress.seconds:.1f}",
                            refresh=False)  # redrawn at the bar's own pace
            if config.save_every_steps and (epoch * steps + progress.step) % config.save_every_steps == 0:
                save_last()
            stop.check()


def restore(train_step, optimizer, last_path: Path, meta: CheckpointMeta, steps_per_epoch: int,
            grad_accum: int = 1) -> Tuple[int, float, EpochProgress]:
    """Load ``last_path`` (or its backup) into the train step (``grad_accum`` micro-batches per update).

    Returns:
        (epochs done, best accuracy so far, progress of the interrupted epoch).
    """
    params, stored, last_path = read_resume_checkpoint(last_path)
    if stored is None:
        raise CheckpointError(f"--resume: {last_path} has no mindresnet metadata; it was not written by "
                              "mindresnet.train. Point --ckpt-dir at the folder of the run to continue.")
    params = {k: v for k, v in params.items() if not k.startswith(SCHEDULE_PARAMS)}
    for key in RESUME_MUST_MATCH:
        if getattr(stored, key) != getattr(meta, key):
            raise CheckpointError(f"--resume: {last_path} was trained with {key}={getattr(stored, key)!r}, "
                                  f"this run has {key}={getattr(meta, key)!r}. Use the same flags or another "
                                  "--ckpt-dir.")
    # The LR table and momentum come from this run's config, so a longer --epochs extends the schedule.
    missing = [name for name in assign_parameters(train_step, params) if not name.startswith(SCHEDULE_PARAMS)]
    if missing:
        raise CheckpointError(f"--resume: {last_path} lacks {len(missing)} parameters of this run "
                              f"({', '.join(missing[:5])}); it was not written by this --arch/--optimizer.")
    epochs_done = stored.epoch
    progress = EpochProgress(step=stored.step, loss_sum=stored.epoch_loss_sum, seconds=stored.epoch_seconds)
    if progress.step > steps_per_epoch:
        raise CheckpointError(f"--resume: {last_path} stopped at step {progress.step} of epoch {epochs_done + 1}, "
                              f"but this run has {steps_per_epoch} steps per epoch. Use the same --batch-size and "
                              "--max-steps-per-epoch, or another --ckpt-dir.")
    # The LR schedule and the data order continue at the interrupted step.
    updates_done = epochs_done * engine.updates_per_epoch(steps_per_epoch, grad_accum) + progress.step // grad_accum
    optimizer.global_step.set_data(ms.Tensor(np.array([updates_done], np.int32)))
    if isinstance(train_step, engine.ComposedTrainStep):
        train_step.resume_at(progress.step)
    logger.info("resumed from %s at epoch %d, step %d", last_path, epochs_done + 1, progress.step)
    best = stored.best_accuracy if stored.best_accuracy is not None else -1.0
    return epochs_done, best, progress


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def train() -> int:
        result = fit(parse_args(argv))
        print(f"best accuracy {result.best_accuracy:.4f}: {result.best_path}")
        return 0

    return run_guarded(train)


if __name__ == "__main__":
    sys.exit(main())
