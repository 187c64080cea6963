"""Graph-mode training with best/last checkpoints, resume, metrics and curves.

``python -m mindresnet.train [flags]`` (``scripts/run_train.sh`` wraps it) is a thin CLI over
:func:`fit`. Defaults reproduce the MindSpore ResNet50 tutorial's transfer learning.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore.train import Callback
from tqdm import tqdm

from mindresnet import __version__, engine, finetune
from mindresnet.callbacks import CallbackRunner, StopRequested, load_callback
from mindresnet.checkpoint import assign_parameters, read_checkpoint, save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.cli import run_guarded
from mindresnet.config import TrainConfig, parse_args, save_config
from mindresnet.data.constants import CLASS_INDICES_FILE
from mindresnet.data.transforms import mix_batches
from mindresnet.data.factory import LoadedDataset, create_dataset, default_val_split, get_dataset_kind
from mindresnet.data.preprocess import Preprocess
from mindresnet.distributed import DistInfo, init_distributed, rank_weights_path
from mindresnet.errors import CheckpointError, ConfigError, TrainingDiverged
from mindresnet.evaluate import RELIABILITY_PNG, evaluate_model, format_report, save_figures
from mindresnet.fileio import write_text
from mindresnet.metrics_log import plot_training_curves, read_metrics, write_metrics
from mindresnet.models import create_model
from mindresnet.preemption import EpochProgress, StopSignals, epoch_batches, read_resume_checkpoint
from mindresnet.run_folder import own_folder
from mindresnet.run_log import LOG_FORMAT, ProgressLines, lines_replace_bar, run_log
from mindresnet.runtime import setup_context

logger = logging.getLogger("mindresnet.train")

# Prefixes of optimizer entries that the config, not the checkpoint, sets (per-group rates: learning_rate_group_<i>).
SCHEDULE_PARAMS = ("learning_rate", "momentum")
RESUME_MUST_MATCH = ("arch", "num_classes", "stem", "convention", "image_size", "preprocess", "val_split", "val_seed")
BEST_JSON = "best.json"
TEST_REPORT = "test_report.json"  # the best checkpoint's evaluate report on the test split (runs with --val-split)


@dataclass
class FitResult:
    """Outcome of :func:`fit`."""

    best_accuracy: float
    best_path: Optional[Path]
    last_path: Path
    epochs_run: int
    global_step: int  # optimizer updates of the last stage run (0 when nothing was left to train)
    history: List[Dict[str, float]] = field(default_factory=list)
    selection_split: str = "test"  # the split that picked the best checkpoint
    test: Optional[Dict[str, float]] = None  # the best checkpoint's scores on the test split, when one was held apart


@dataclass
class RunData:
    """The pipelines of a run: training images, the split that picks the best checkpoint (and drives the
    plateau LR and early stopping), and the test split scored once at the end."""

    train: LoadedDataset  # sharded for this rank
    select: LoadedDataset
    select_name: str  # "val" (held out of the training images) or the dataset's own split ("test" for CIFAR-10)
    test: Optional[LoadedDataset]  # None when ``select`` is the dataset's own held-out split, or it has none
    val_split: float  # fraction of the training images held out (0: none)


def resolve_val_split(config: TrainConfig) -> float:
    """``--val-split``, or the dataset's default (:func:`~mindresnet.data.factory.default_val_split`)."""
    if config.val_split is not None:
        return config.val_split
    fraction = default_val_split(config.dataset, config.data_dir)
    if fraction:
        logger.info("%s has no held-out split of its own: holding out %g of the training images (stratified, "
                    "seed %d) to pick the best checkpoint; --val-split sets the fraction", config.data_dir, fraction,
                    config.seed)
    return fraction


def build_datasets(config: TrainConfig, dist: DistInfo, preprocess: Preprocess, val_split: float) -> RunData:
    """The :class:`RunData` of ``config.dataset``, its images preprocessed by ``preprocess``."""
    common = dict(preprocess=preprocess, batch_size=config.batch_size, workers=config.workers, val_split=val_split,
                  seed=config.seed)
    train = create_dataset(config.dataset, config.data_dir, "train", num_shards=dist.shards, shard_id=dist.shard_id,
                           download=config.download, auto_augment=config.auto_augment,
                           color_jitter=config.color_jitter, reprob=config.reprob, sampler=config.sampler,
                           class_indices_path=Path(config.ckpt_dir) / CLASS_INDICES_FILE if dist.is_main else None,
                           **common)
    own = get_dataset_kind(config.dataset)
    if not val_split:
        return RunData(train, create_dataset(config.dataset, config.data_dir, "eval", **common), own.eval_usage,
                       None, 0.0)
    test = (create_dataset(config.dataset, config.data_dir, "eval", **common)
            if own.has_eval_split(config.data_dir) else None)
    return RunData(train, create_dataset(config.dataset, config.data_dir, "val", **common), "val", test, val_split)


def checkpoint_paths(config: TrainConfig) -> Tuple[Path, Path]:
    """(best, last) checkpoint paths of this run."""
    folder = Path(config.ckpt_dir)
    return folder / f"{config.arch}-best.ckpt", folder / f"{config.arch}-last.ckpt"


def stage_plan(config: TrainConfig) -> List[Tuple[str, int, int]]:
    """(stage, first epoch, end epoch) of each stage of the run: head-only epochs first
    (``--linear-probe``: all of them; ``--freeze-epochs N``: N), then every layer."""
    head = config.head_epochs()
    return [(name, first, end) for name, first, end in (("head", 0, head), ("full", head, config.epochs))
            if end > first]


class FullStage:
    """Every trainable layer on the augmented training pipeline: the whole run, or the epochs after
    ``--freeze-epochs`` (the LR schedule covers this stage's epochs). See :class:`finetune.HeadStage`
    for the other stage and the interface both offer."""

    name = "full"

    def __init__(self, net, config: TrainConfig, dist: DistInfo, train: LoadedDataset, test: LoadedDataset,
                 num_classes: int, first_epoch: int):
        net.freeze_backbone(config.freeze_backbone)  # unfreezes after a head stage
        self.net, self.config, self.dist, self.test_ds = net, config, dist, test.pipeline
        self.first_epoch, self.end_epoch = first_epoch, config.epochs
        self.train_ds = mix_batches(train.pipeline, num_classes, config.mixup, config.cutmix)
        steps = self.train_ds.get_dataset_size()
        if config.max_steps_per_epoch:
            steps = min(steps, config.max_steps_per_epoch)
        if steps < 1:
            raise ConfigError(f"--batch-size {config.batch_size} is larger than the training set of this rank; "
                              "lower --batch-size.")
        self.steps_per_epoch = steps
        self.images_per_epoch = steps * config.batch_size * dist.shards
        self.updates_per_epoch = engine.updates_per_epoch(steps, config.grad_accum)
        rates = engine.lr_schedule(config.lr_schedule, config.lr, config.min_lr, config.epochs - first_epoch,
                                   self.updates_per_epoch, config.warmup_epochs)
        self.optimizer = finetune.optimizer_for(net, config, rates)
        self.ema = finetune.EMA(net, config.ema) if config.ema else None
        self.train_step = engine.build_train_step(
            net, finetune.loss_for(config, num_classes), self.optimizer, config.amp, config.loss_scale,
            grad_accum=config.grad_accum, clip_grad=config.clip_grad, ema=self.ema, steps_per_epoch=steps)

    def run_epoch(self, epoch: int, progress: EpochProgress, stop: StopSignals, save_last: Callable[[], None],
                  after_step: Callable[[float], None]) -> None:
        """See :func:`run_epoch`."""
        run_epoch(self.train_step, self.train_ds, self.steps_per_epoch, epoch, self.config, self.dist, progress,
                  stop, save_last, after_step)

    @property
    def train_network(self):
        """The cell of one training step (MindSpore callbacks' ``train_network``)."""
        return self.train_step

    @property
    def train_dataset(self):
        """The training batches (MindSpore callbacks' ``train_dataset``)."""
        return self.train_ds

    def evaluation_weights(self) -> ContextManager[None]:
        """With ``--ema``, the averaged weights (evaluated and saved as best); else the raw ones."""
        return finetune.evaluation_weights(self.ema)

    def evaluate(self) -> Dict[str, float]:
        """Top-1, top-5 and loss on the selection split."""
        scores = engine.evaluate(self.net, self.test_ds)
        self.train_step.set_train(True)
        return scores

    def lr_columns(self) -> Dict[str, float]:
        """The latest learning rates of the head and, when it trains, the stem."""
        return finetune.lr_columns(self.optimizer, self.net)

    def parameters(self) -> List[ms.Parameter]:
        """What the last checkpoint holds: weights, optimizer state, EMA averages, accumulators."""
        return list(self.train_step.get_parameters())

    def restore(self, params: Dict[str, ms.Parameter], epochs_done: int, step: int) -> List[str]:
        """Load a full-stage last checkpoint's ``params``; continue at ``step`` of epoch ``epochs_done + 1``.

        Returns:
            The names of this stage's parameters that ``params`` lacks.
        """
        missing = assign_parameters(self.train_step, params)
        # The LR schedule and the data order continue at the interrupted step.
        updates = (epochs_done - self.first_epoch) * self.updates_per_epoch + step // self.config.grad_accum
        self.optimizer.global_step.set_data(ms.Tensor(np.array([updates], np.int32)))
        if isinstance(self.train_step, engine.ComposedTrainStep):
            self.train_step.resume_at(step)
        return missing

    @property
    def global_step(self) -> int:
        """Optimizer updates of this stage so far."""
        return int(self.optimizer.global_step.asnumpy().reshape(-1)[0])


def build_stage(name: str, first_epoch: int, net, config: TrainConfig, dist: DistInfo, train: LoadedDataset,
                test: LoadedDataset, num_classes: int):
    """The :class:`FullStage` or :class:`finetune.HeadStage` that trains epochs ``first_epoch`` onwards."""
    if name == "full":
        return FullStage(net, config, dist, train, test, num_classes, first_epoch)
    plain = create_dataset(config.dataset, config.data_dir, "train", preprocess=train.preprocess,
                           batch_size=config.batch_size, workers=config.workers, augment=False, shuffle=False,
                           drop_remainder=False, num_shards=dist.shards, shard_id=dist.shard_id,
                           val_split=config.val_split or 0.0, seed=config.seed)
    lr, flag = config.head_stage_lr()
    return finetune.HeadStage(net, config, plain.pipeline, test.pipeline, config.head_epochs(), lr, flag,
                              warmup_epochs=config.warmup_epochs if config.linear_probe else 0.0, shards=dist.shards)


class RunRecord:
    """What a run writes across its epochs and stages: last, best and top-k checkpoints, metrics.csv,
    the curves, the best accuracy so far on the ``selection`` split, and at the end best.json."""

    def __init__(self, config: TrainConfig, dist: DistInfo, net, meta: CheckpointMeta, selection: str):
        self.config, self.dist, self.net, self.meta, self.selection = config, dist, net, meta, selection
        self.folder = Path(config.ckpt_dir)
        self.best_path, self.last_path = checkpoint_paths(config)
        self.top_k = engine.TopKCheckpoints(self.folder, config.arch, config.keep_best) if config.keep_best else None
        self.best_accuracy = -1.0
        self.history: List[Dict[str, float]] = []

    def save_last(self, stage, epochs_done: int, progress: EpochProgress = EpochProgress()) -> None:
        """Write ``<arch>-last.ckpt``: ``stage``'s state after ``epochs_done`` epochs and ``progress``."""
        meta = self.meta.replace(stage=stage.name, epoch=epochs_done, best_accuracy=self.best_accuracy,
                                 step=progress.step, epoch_loss_sum=progress.loss_sum,
                                 epoch_seconds=progress.seconds)
        if self.dist.is_main:
            self.require_finite(stage.parameters(), f"after epoch {epochs_done}, step {progress.step}")
            save_checkpoint(stage.parameters(), self.last_path, meta, keep_backup=True)
        elif (rank_copy := rank_weights_path(self.last_path, self.dist)) is not None:  # test hook, distributed.py
            save_checkpoint(stage.parameters(), rank_copy, self.meta.replace(epoch=epochs_done, rank=self.dist.rank))

    def remedy(self) -> str:
        """What to try after a divergence, and what is kept."""
        return (f"Lower --lr (now {self.config.lr}), add --clip-grad 1.0, or use --amp O0; the checkpoints "
                f"in {self.folder} keep the last finite state.")

    def require_finite(self, params, when: str) -> None:
        """Raise TrainingDiverged, before anything is written, when a parameter holds NaN or inf."""
        bad = [param.name for param in params if not np.isfinite(param.asnumpy()).all()]
        if bad:
            raise TrainingDiverged(f"{len(bad)} parameters became NaN or infinite {when} ({', '.join(bad[:3])}"
                                   f"{' ...' if len(bad) > 3 else ''}): training diverged. {self.remedy()}")

    def evaluates(self, epoch: int) -> bool:
        """Whether this process evaluates after ``epoch`` (``--eval-every``, and always the last)."""
        return self.dist.is_main and ((epoch + 1) % self.config.eval_every == 0 or epoch + 1 == self.config.epochs)

    def evaluate(self, stage, epoch: int) -> Dict[str, float]:
        """Score ``stage``'s evaluation weights after ``epoch``; keep them as best / top-k when they rank."""
        with stage.evaluation_weights():
            self.require_finite(self.net.get_parameters(), f"after epoch {epoch + 1}")
            scores = stage.evaluate()
            if not math.isfinite(scores["loss"]):
                raise TrainingDiverged(f"the evaluation loss became {scores['loss']} after epoch {epoch + 1}: "
                                       f"training diverged. {self.remedy()}")
            scored = self.meta.replace(stage=stage.name, epoch=epoch + 1, accuracy=scores["accuracy"])
            if scores["accuracy"] > self.best_accuracy:
                self.best_accuracy = scores["accuracy"]
                save_checkpoint(self.net, self.best_path, scored)
            if self.top_k is not None:
                self.top_k.offer(scores["accuracy"], lambda path: save_checkpoint(self.net, path, scored))
        return scores

    def end_epoch(self, stage, epoch: int, row: Dict[str, float]) -> None:
        """Record ``epoch``'s row; write the last checkpoint, metrics.csv and the curves."""
        self.history.append(row)
        self.save_last(stage, epoch + 1)
        if self.dist.is_main:
            write_metrics(self.history, self.folder / "metrics.csv")
            plot_training_curves(self.history, self.folder / "training_curves.png")
            logger.info("epoch %d/%d (%s) loss %.4f %s acc %s lr %.2e %.1fs %.1f img/s", epoch + 1,
                        self.config.epochs, stage.name, row["loss"], self.selection,
                        f"{row['accuracy']:.4f}" if "accuracy" in row else "-", row["lr"], row["seconds"],
                        row["images_per_s"])

    def finish(self, test: Optional[LoadedDataset]) -> Optional[Dict[str, float]]:
        """Score the best checkpoint once on ``test`` (when the run has a test split apart from its selection
        split), add the scores to the last metrics row, and write best.json. Returns the test scores.

        The full report (:mod:`mindresnet.evaluate`: per-class precision/recall/F1, averages, ECE) is
        logged, then written as test_report.json, test_confusion_matrix.png and test_reliability_diagram.png."""
        if not self.dist.is_main:
            return None
        scores = None
        if test is not None and self.best_path.exists():
            params, _ = read_checkpoint(self.best_path)
            assign_parameters(self.net, params)
            report = evaluate_model(self.net, test.pipeline, self.meta.class_names)
            scores = {"accuracy": report.accuracy, "top5": report.top5, "loss": report.loss, "count": report.count,
                      "macro_f1": report.averages()["macro"]["f1"], "ece": report.calibration.ece}
            logger.info("test split: the best checkpoint, picked on %s\n%s", self.selection, format_report(report))
            write_text(self.folder / TEST_REPORT, json.dumps(report.to_dict(), indent=2) + "\n")
            save_figures(report, self.folder / "test_confusion_matrix.png",
                         self.folder / f"test_{RELIABILITY_PNG}", title=f"{self.meta.arch} best checkpoint, test split")
            if self.history:
                self.history[-1].update({f"test_{key}": scores[key] for key in ("accuracy", "top5", "loss")})
                write_metrics(self.history, self.folder / "metrics.csv")
        scored = [row for row in self.history if not math.isnan(row.get("accuracy", math.nan))]
        best = max(scored, key=lambda row: row["accuracy"], default=None)
        summary = {"selection_split": self.selection, "val_split": self.meta.val_split, "val_seed": self.meta.val_seed,
                   "best_checkpoint": str(self.best_path) if self.best_path.exists() else None,
                   "best_epoch": int(best["epoch"]) if best else None,
                   "best_accuracy": best["accuracy"] if best else None, "test": scores}
        write_text(self.folder / BEST_JSON, json.dumps(summary, indent=2) + "\n")
        return scores


def accuracy_watch(stage, config: TrainConfig, history: List[Dict[str, float]]) -> engine.AccuracyWatch:
    """Plateau cuts and early stopping for ``stage``: only the run's last stage has them (a head stage
    before a full one always runs its N epochs). Replays the stage's earlier evaluations of a resumed run."""
    last = stage.end_epoch == config.epochs
    watch = engine.AccuracyWatch(stage.optimizer,
                                 config.plateau_patience if last and config.lr_schedule == "plateau" else None,
                                 config.early_stop if last else None, config.min_lr)
    watch.replay(row.get("accuracy", math.nan) for row in history if row["epoch"] > stage.first_epoch)
    return watch


def run_stage(record: RunRecord, stage, first_epoch: int, progress: EpochProgress, stop: StopSignals,
              callbacks: CallbackRunner, lines: ProgressLines) -> bool:
    """Train ``stage`` from ``first_epoch`` (``progress`` into it) to its last epoch, calling ``callbacks`` and
    logging ``lines`` on the way; True when it stopped early (early stopping, or a callback's request)."""
    watch = accuracy_watch(stage, record.config, record.history)

    def after_step(loss: float) -> None:
        lines.step(epoch, stage.steps_per_epoch, progress, loss)
        callbacks.step_end(epoch, progress.step, loss)

    for epoch in range(first_epoch, stage.end_epoch):
        stop_early, scores = False, None
        callbacks.epoch_begin(stage, epoch, progress.step)
        try:
            stage.run_epoch(epoch, progress, stop, lambda: record.save_last(stage, epoch, progress), after_step)
            row = {"epoch": epoch + 1, "loss": progress.loss_sum / stage.steps_per_epoch, **stage.lr_columns(),
                   "seconds": progress.seconds, "images_per_s": stage.images_per_epoch / progress.seconds}
            if record.evaluates(epoch):
                with stop.abortable():
                    scores = record.evaluate(stage, epoch)
                row.update(accuracy=scores["accuracy"], top5=scores["top5"], eval_loss=scores["loss"],
                           eval_split=record.selection)
                stop_early = watch.observe(scores["accuracy"])
        except KeyboardInterrupt:  # Preempted, or Ctrl-C where no handler could be installed
            record.save_last(stage, epoch, progress)
            logger.warning("interrupted at epoch %d, step %d: saved %s (continue with --resume)",
                           epoch + 1, progress.step, record.last_path)
            raise
        except StopRequested as request:
            record.save_last(stage, epoch, progress)
            logger.info("%s: saved %s (continue with --resume)", request, record.last_path)
            return True
        record.end_epoch(stage, epoch, row)
        progress = EpochProgress()
        requested = callbacks.epoch_end(scores)
        if stop_early:
            logger.info("early stop: no better %s accuracy in %d evaluations", record.selection,
                        record.config.early_stop)
            return True
        if requested:
            logger.info("a callback requested a stop after epoch %d", epoch + 1)
            return True
    return False


def fit(config: TrainConfig, callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train ``config.arch`` on ``config.dataset``; keep the best and the last checkpoint.

    A run has up to two stages (:func:`stage_plan`): head-only epochs on cached features
    (:class:`finetune.HeadStage`), then every layer (:class:`FullStage`). Checkpoints record the
    stage; ``--resume`` continues in the stage and at the step where the run stopped. The log goes
    to ``<ckpt-dir>/train.log`` too (:mod:`mindresnet.run_log`).

    Args:
        callbacks: ``mindspore.train.Callback`` objects, called after those of ``--callback``
            (:mod:`mindresnet.callbacks`).

    Returns:
        A FitResult with the best accuracy, checkpoint paths and per-epoch history.

    Raises:
        ConfigError, DeviceError, CheckpointError, DataError: bad input, named in the message.
        TrainingDiverged: the loss became NaN/inf (the best checkpoint is left untouched).
        Preempted: SIGTERM or SIGINT (a KeyboardInterrupt), after saving ``<arch>-last.ckpt`` at the
            last whole step for ``--resume``.
    """
    config.validate()
    callbacks = [load_callback(spec) for spec in config.callback] + list(callbacks)
    target = setup_context(config.device, dump_dir=config.ckpt_dir)
    dist = init_distributed()
    resume = config.resume_checkpoint() is not None
    with own_folder(Path(config.ckpt_dir), dist.is_main, resume=resume, overwrite=config.overwrite), \
            run_log(Path(config.ckpt_dir), dist.is_main, append=resume):
        return _fit(config, target, dist, callbacks)


def _fit(config: TrainConfig, target: str, dist: DistInfo, callbacks: Sequence[Callback]) -> FitResult:
    """:func:`fit` once the run owns its folder."""
    ms.set_seed(config.seed)
    np.random.seed(config.seed)
    if config.init_from:
        adopt_init_from(config)
    best_path, last_path = checkpoint_paths(config)
    resume_from = config.resume_checkpoint()
    config.val_split = resolve_val_split(config)
    data = build_datasets(config, dist, get_dataset_kind(config.dataset).preprocess(config.image_size),
                          config.val_split)
    train = data.train
    class_names = train.class_names
    num_classes = config.num_classes or len(class_names)
    if num_classes != len(class_names):
        raise ConfigError(f"--num-classes {num_classes} does not match the {len(class_names)} classes of "
                          f"{config.data_dir}. Omit --num-classes to use the dataset's.")
    net = create_model(config.arch, num_classes=num_classes, pretrained=config.init_from or config.pretrained_value(),
                       stem=config.stem, drop_path=config.drop_path, allow_partial=config.allow_partial)
    meta = CheckpointMeta(arch=config.arch, num_classes=num_classes, stem=config.stem, preprocess=train.preprocess,
                          class_names=list(class_names), dataset=config.dataset, convention=net.convention,
                          mindresnet=__version__, val_split=data.val_split,
                          val_seed=config.seed if data.val_split else None, drop_path=config.drop_path)
    record = RunRecord(config, dist, net, meta, data.select_name)
    start_epoch, progress, resumed = 0, EpochProgress(), None
    if resume_from is not None:
        resumed = read_resume(resume_from, meta, config.head_epochs(), net)
        start_epoch, progress = resumed.meta.epoch, resumed.progress
        record.best_accuracy = resumed.meta.best_accuracy if resumed.meta.best_accuracy is not None else -1.0
        record.history = [{key: value for key, value in row.items() if not key.startswith("test_")}  # rescored at the end
                          for row in read_metrics(record.folder / "metrics.csv") if row["epoch"] <= start_epoch]
    if dist.is_main:
        save_config(config, record.folder / "config.yaml")
    logger.info("training %s on %s (%s): %s, global batch %d, rank %d of %d", config.arch, target, config.dataset,
                " + ".join(f"{end - first} {name} epochs" for name, first, end in stage_plan(config)),
                config.batch_size * dist.shards, dist.rank, dist.shards)
    logger.info("the %s split picks the best checkpoint%s", data.select_name,
                f" (a {data.val_split:g} stratified hold-out of the training images, seed {config.seed}); the "
                "test split is scored once at the end" if data.val_split else " (no separate test score)")
    stage = None
    lines = ProgressLines(config.log_interval if dist.is_main else None, config.epochs)
    with StopSignals(leader=dist.is_main) as stop, \
            CallbackRunner(callbacks, net, config.epochs, dist.shards).running() as runner:
        for name, first, end in stage_plan(config):
            if end <= start_epoch:
                continue
            stage = build_stage(name, first, net, config, dist, train, data.select, num_classes)
            if resumed is not None and resumed.meta.stage == name:
                resumed.restore(stage)
            stopped_early = run_stage(record, stage, max(first, start_epoch), progress, stop, runner, lines)
            progress = EpochProgress()
            if stopped_early:
                break
    test_scores = record.finish(data.test)
    return FitResult(best_accuracy=record.best_accuracy, best_path=best_path if best_path.exists() else None,
                     last_path=last_path, epochs_run=len(record.history) - start_epoch,
                     global_step=stage.global_step if stage is not None else 0, history=record.history,
                     selection_split=data.select_name, test=test_scores)


def adopt_init_from(config: TrainConfig) -> None:
    """Take ``--arch`` and ``--stem`` from the ``--init-from`` checkpoint, whose weights start the run."""
    _, stored = read_checkpoint(config.init_from)
    if stored is None:
        raise CheckpointError(f"--init-from {config.init_from} has no mindresnet metadata (arch, stem, classes). "
                              "For weights from elsewhere, pass --pretrained PATH with --arch and --stem.")
    logger.info("--init-from %s: a new run of %s (%s stem) from its weights", config.init_from, stored.arch,
                stored.stem)
    config.arch, config.stem = stored.arch, stored.stem


def run_epoch(train_step, dataset, steps: int, epoch: int, config: TrainConfig, dist: DistInfo,
              progress: EpochProgress, stop: StopSignals, save_last: Callable[[], None],
              after_step: Callable[[float], None]) -> None:
    """Train ``epoch`` from step ``progress.step`` to ``steps``, updating ``progress`` and calling
    ``after_step(loss)`` after each step.

    Stops with Preempted at a step boundary once ``stop`` has a signal; calls ``save_last`` every
    ``config.save_every_steps`` global steps. Raises TrainingDiverged on a NaN/inf loss.
    """
    train_step.set_train(True)
    start = time.perf_counter() - progress.seconds
    bar = tqdm(total=steps, initial=progress.step, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
               leave=False, disable=not dist.is_main or lines_replace_bar(config.log_interval), file=sys.stderr,
               dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30)  # keep logs of non-interactive runs short
    images_per_step = config.batch_size * dist.shards
    batches = epoch_batches(dataset, config.seed, epoch, skip=progress.step)
    with bar:
        for images, labels in batches:
            if progress.step >= steps:
                break
            loss = float(train_step(images, labels).asnumpy())
            progress.count_step(loss, epoch, start, f"Lower --lr (now {config.lr}) or use --amp O0")
            after_step(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{progress.step * images_per_step / progress.seconds:.1f}",
                            refresh=False)  # redrawn at the bar's own pace
            if config.save_every_steps and (epoch * steps + progress.step) % config.save_every_steps == 0:
                save_last()
            stop.check()


@dataclass
class ResumePoint:
    """Where a run stopped: the last checkpoint's parameters, metadata and progress in its epoch."""

    params: Dict[str, ms.Parameter]
    meta: CheckpointMeta
    progress: EpochProgress
    path: Path

    def restore(self, stage) -> None:
        """Load the optimizer state of ``stage`` (the stage that wrote the checkpoint) and its position."""
        if self.progress.step > stage.steps_per_epoch:
            raise CheckpointError(f"--resume: {self.path} stopped at step {self.progress.step} of epoch "
                                  f"{self.meta.epoch + 1}, but this run has {stage.steps_per_epoch} steps per epoch. "
                                  "Use the same --batch-size and --max-steps-per-epoch, or another --ckpt-dir.")
        # The LR table and momentum come from this run's config, so a longer --epochs extends the schedule.
        missing = [name for name in stage.restore(self.params, self.meta.epoch, self.progress.step)
                   if not name.startswith(SCHEDULE_PARAMS)]
        if missing:
            raise CheckpointError(f"--resume: {self.path} lacks {len(missing)} parameters of this run "
                                  f"({', '.join(missing[:5])}); it was not written by this --arch/--optimizer.")
        logger.info("resumed from %s at epoch %d, step %d (%s stage)", self.path, self.meta.epoch + 1,
                    self.progress.step, stage.name)


def read_resume(last_path: Path, meta: CheckpointMeta, head_epochs: int, net) -> ResumePoint:
    """Read ``last_path`` (or its backup), check it fits this run, and load its weights into ``net``.

    A checkpoint of the head stage continues in the head stage, or, written at its last epoch's
    end, starts the full stage from its weights; one of the full stage continues there.
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
    expected = "head" if stored.epoch < head_epochs else "full"
    head_done = stored.stage == "head" and stored.epoch == head_epochs and stored.step == 0
    if stored.stage != expected and not head_done:
        raise CheckpointError(f"--resume: {last_path} was saved in the {stored.stage} stage at epoch {stored.epoch}, "
                              f"but this run's flags put epoch {stored.epoch + 1} in the {expected} stage. Use the "
                              "same --linear-probe and --freeze-epochs, or another --ckpt-dir.")
    missing = assign_parameters(net, params)
    if missing:
        raise CheckpointError(f"--resume: {last_path} lacks {len(missing)} weights of this network "
                              f"({', '.join(missing[:5])}); it was not written by this --arch.")
    progress = EpochProgress(step=stored.step, loss_sum=stored.epoch_loss_sum, seconds=stored.epoch_seconds)
    return ResumePoint(params, stored, progress, last_path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)

    def train() -> int:
        result = fit(parse_args(argv))
        print(f"best {result.selection_split} accuracy {result.best_accuracy:.4f}: {result.best_path}")
        if result.test is not None:
            print(f"test accuracy {result.test['accuracy']:.4f} (top-5 {result.test['top5']:.4f}) of that checkpoint")
        return 0

    return run_guarded(train)


if __name__ == "__main__":
    sys.exit(main())
