"""A training run: :func:`fit` runs the stages of the recipe and keeps its record: last, best and
top-k checkpoints, ``metrics.csv``, the curves, ``best.json`` and the test report."""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore.train import Callback

from mindresnet import __version__
from mindresnet.checkpoint import assign_parameters, read_checkpoint, save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.data.constants import CLASS_INDICES_FILE
from mindresnet.data.factory import LoadedDataset, create_dataset, default_val_split, get_dataset_kind
from mindresnet.data.preprocess import Preprocess
from mindresnet.distributed import DistInfo, init_distributed, rank_weights_path
from mindresnet.errors import CheckpointError, ConfigError, TrainingDiverged
from mindresnet.fileio import write_text
from mindresnet.models import create_model
from mindresnet.report import RELIABILITY_PNG, evaluate_model, format_report, save_figures
from mindresnet.runtime import setup_context
from mindresnet.training import graph_cache
from mindresnet.training.callbacks import CallbackRunner, StopRequested, load_callback
from mindresnet.training.config import TrainConfig, save_config
from mindresnet.training.loss import loss_for
from mindresnet.training.metrics_log import plot_training_curves, read_metrics, write_metrics
from mindresnet.training.progress import EpochProgress
from mindresnet.training.recipe import head_epochs, stage_plan
from mindresnet.training.resume import read_resume
from mindresnet.training.run_folder import own_folder
from mindresnet.training.run_log import ProgressLines, run_log
from mindresnet.training.schedule import accuracy_watch
from mindresnet.training.signals import StopSignals
from mindresnet.training.stages import build_stage

logger = logging.getLogger("mindresnet.training.run")

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


class TopKCheckpoints:
    """The ``k`` best checkpoints of a run, ranked: ``<arch>-top1.ckpt`` (best) ... ``<arch>-top<k>.ckpt``.

    Their accuracies, best first, are kept in ``<arch>-top.json`` so the ranking survives a resume.
    """

    def __init__(self, folder: Path, arch: str, k: int):
        self.folder, self.arch, self.k = Path(folder), arch, int(k)
        self.ranking = self.folder / f"{arch}-top.json"

    def path(self, rank: int) -> Path:
        """File of rank ``rank`` (1 = best)."""
        return self.folder / f"{self.arch}-top{rank}.ckpt"

    def scores(self) -> List[float]:
        """Accuracies of the kept files, best first."""
        if not self.ranking.is_file():
            return []
        return [float(score) for score in json.loads(self.ranking.read_text())][:self.k]

    def offer(self, accuracy: float, save: Callable[[Path], None]) -> Optional[int]:
        """Keep a model of ``accuracy`` if it ranks in the top ``k``: shift the worse files down one
        rank and call ``save(path)`` for its own; return its rank, or None when not kept."""
        scores = self.scores()
        rank = 1 + sum(score >= accuracy for score in scores)
        if rank > self.k:
            return None
        for lower in range(min(len(scores), self.k - 1), rank - 1, -1):
            os.replace(self.path(lower), self.path(lower + 1))
        save(self.path(rank))
        scores.insert(rank - 1, float(accuracy))
        write_text(self.ranking, json.dumps(scores[:self.k]))
        return rank


class RunRecord:
    """What a run writes across its epochs and stages: last, best and top-k checkpoints, metrics.csv,
    the curves, the best accuracy so far on the ``selection`` split, and at the end best.json."""

    def __init__(self, config: TrainConfig, dist: DistInfo, net, meta: CheckpointMeta, selection: str):
        self.config, self.dist, self.net, self.meta, self.selection = config, dist, net, meta, selection
        self.folder = Path(config.ckpt_dir)
        self.best_path, self.last_path = checkpoint_paths(config)
        self.top_k = TopKCheckpoints(self.folder, config.arch, config.keep_best) if config.keep_best else None
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

    A run has up to two stages (:func:`~mindresnet.training.recipe.stage_plan`): head-only epochs on
    cached features (:class:`~mindresnet.training.stages.HeadStage`), then every layer
    (:class:`~mindresnet.training.stages.FullStage`). Checkpoints record the stage; ``--resume``
    continues in the stage and at the step where the run stopped. The log goes to
    ``<ckpt-dir>/train.log`` too (:mod:`mindresnet.training.run_log`).

    Args:
        callbacks: ``mindspore.train.Callback`` objects, called after those of ``--callback``
            (:mod:`mindresnet.training.callbacks`).

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
        resumed = read_resume(resume_from, meta, head_epochs(config), net)
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
    loss = loss_for(config, num_classes)
    stage = None
    lines = ProgressLines(config.log_interval if dist.is_main else None, config.epochs)
    uncached = graph_cache.why_not(config, callbacks, target)
    if uncached:
        logger.info("graph cache off: %s", uncached)
    with graph_cache.graph_cache(None if uncached else graph_cache.run_key(config, net, dist.shards, dist.rank),
                                 dist.rank):
        with StopSignals(leader=dist.is_main) as stop, \
                CallbackRunner(callbacks, net, config.epochs, dist.shards).running() as runner:
            for name, first, end in stage_plan(config):
                if end <= start_epoch:
                    continue
                stage = build_stage(name, first, net, config, dist, train, data.select, num_classes, loss)
                if resumed is not None and resumed.meta.stage == name:
                    resumed.restore(stage)
                stopped_early = run_stage(record, stage, max(first, start_epoch), progress, stop, runner, lines)
                progress = EpochProgress()
                if stopped_early:
                    break
        test_scores = record.finish(data.test)
    logger.info("best %s accuracy %.4f: %s", data.select_name, record.best_accuracy,
                best_path if best_path.exists() else "no checkpoint (no evaluation improved)")
    if test_scores is not None:
        logger.info("test accuracy %.4f (top-5 %.4f) of that checkpoint", test_scores["accuracy"], test_scores["top5"])
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
