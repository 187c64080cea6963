"""The stages of a run, behind one :class:`Stage` protocol: :class:`HeadStage` (the head alone, on
features computed once) and :class:`FullStage` (every trainable layer on the augmented images)."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Callable, ContextManager, Dict, List, Optional, Protocol, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn
from tqdm import tqdm

from mindresnet.checkpoint import assign_parameters
from mindresnet.data.factory import LoadedDataset, create_dataset
from mindresnet.data.transforms import mix_batches
from mindresnet.distributed import DistInfo
from mindresnet.errors import ConfigError
from mindresnet.metrics import evaluate
from mindresnet.training import optim, recipe
from mindresnet.training.config import TrainConfig
from mindresnet.training.features import HeadTrainer, extract_features
from mindresnet.training.progress import EpochProgress, epoch_batches
from mindresnet.training.run_log import lines_replace_bar
from mindresnet.training.schedule import lr_schedule
from mindresnet.training.signals import StopSignals
from mindresnet.training.step import EMA, ComposedTrainStep, build_train_step, evaluation_weights, updates_per_epoch

logger = logging.getLogger("mindresnet.training.stages")


class Stage(Protocol):
    """What :func:`mindresnet.training.run.fit` needs of a stage of the run (one at a time, in the order of
    :func:`mindresnet.training.recipe.stage_plan`).

    Attributes:
        name: ``head`` or ``full``, recorded in checkpoints as their ``stage``.
        first_epoch, end_epoch: the run's epochs this stage trains, ``[first_epoch, end_epoch)``.
        steps_per_epoch: steps of one epoch; ``images_per_epoch``: images of one epoch, all ranks.
        optimizer: the stage's optimizer (its LR tables, plateau cuts and ``global_step``).
        train_network, train_dataset: the step cell and the batches, as MindSpore callbacks read them.
    """

    name: str
    first_epoch: int
    end_epoch: int
    steps_per_epoch: int
    images_per_epoch: int
    optimizer: nn.Optimizer

    @property
    def train_network(self) -> nn.Cell: ...

    @property
    def train_dataset(self): ...

    @property
    def global_step(self) -> int:
        """Optimizer updates of this stage so far."""

    def run_epoch(self, epoch: int, progress: EpochProgress, stop: StopSignals, save_last: Callable[[], None],
                  after_step: Callable[[float], None]) -> None:
        """Train ``epoch`` from step ``progress.step`` on, counting each step into ``progress`` and calling
        ``after_step(loss)``; ``stop.check()`` after each step; ``save_last()`` every ``--save-every-steps``."""

    def evaluation_weights(self) -> ContextManager[None]:
        """The weights to evaluate and keep as best, for the duration of the block."""

    def evaluate(self) -> Dict[str, float]:
        """Top-1, top-5 and loss on the selection split."""

    def lr_columns(self) -> Dict[str, float]:
        """The latest learning rates for ``metrics.csv``: ``lr`` (the head) and, when it trains, ``lr_stem``."""

    def parameters(self) -> List[ms.Parameter]:
        """What the last checkpoint holds."""

    def restore(self, params: Dict[str, ms.Parameter], epochs_done: int, step: int) -> List[str]:
        """Load a last checkpoint of this stage; continue at ``step`` of epoch ``epochs_done + 1``. Returns the
        names of this stage's parameters that ``params`` lacks."""


class HeadStage:
    """Head-only epochs on features computed once: the linear probe, and the first stage of ``--freeze-epochs``.

    The backbone is frozen (:meth:`ResNet.freeze_backbone`); its pooled features of the un-augmented
    training images are extracted once (eval-mode BatchNorm) and kept in memory, those of the test
    images at the first evaluation. Each epoch then trains the classifier on them step by step; a stop
    signal is honoured after any step and the epoch resumes there. The head's schedule runs over
    this stage's epochs only; no mixing, EMA, accumulation or clipping applies here.

    One of the two :class:`Stage` implementations (the other is :class:`FullStage`).

    Args:
        net: the ResNet (its head trains in place).
        config: the run's ``TrainConfig`` (optimizer, momentum, weight decay, schedule, batch size,
            label smoothing, seed, ``--amp``, ``--save-every-steps``).
        train_pipeline: un-augmented, unshuffled training batches (this rank's shard).
        test_pipeline: evaluation batches.
        loss: the run's loss (:func:`mindresnet.training.loss.loss_for`).
        epochs: epochs of this stage (it starts at epoch 0).
        peak_lr: the head's peak learning rate; ``lr_flag`` names the flag that set it.
        warmup_epochs: epochs of linear warm-up of the head's rate.
        shards: data-parallel ranks (for the images/s figure).
    """

    name = "head"
    first_epoch = 0

    def __init__(self, net: nn.Cell, config, train_pipeline, test_pipeline, loss: nn.Cell, epochs: int,
                 peak_lr: float, lr_flag: str, warmup_epochs: float = 0.0, shards: int = 1):
        net.freeze_backbone()
        self.net, self.test_pipeline, self.end_epoch = net, test_pipeline, int(epochs)
        self.train_dataset = train_pipeline  # MindSpore callbacks' train_dataset
        self.cpu_kernels = config.amp == "O0"  # AMP cannot rewrite the kernels' cells (build_train_step)
        self.save_every_steps, self.lr_hint = config.save_every_steps, f"{lr_flag} (now {peak_lr})"
        start = time.perf_counter()
        self.features, self.labels = extract_features(net, train_pipeline, self.cpu_kernels)
        logger.info("head stage: features of %d training images in %.1f s", len(self.features),
                    time.perf_counter() - start)
        self.test_features: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self.steps_per_epoch = -(-len(self.features) // config.batch_size)
        self.images_per_epoch = len(self.features) * shards
        rates = lr_schedule(config.lr_schedule, peak_lr, min(config.min_lr, peak_lr), self.end_epoch,
                            self.steps_per_epoch, warmup_epochs)
        self.optimizer = optim.build_optimizer(net.get_classifier().trainable_params(), config.optimizer, rates,
                                               config.momentum, config.weight_decay)
        self.trainer = HeadTrainer(net, self.optimizer, loss, config.batch_size, config.seed,
                                   balanced=config.sampler == "balanced")

    def run_epoch(self, epoch: int, progress, stop, save_last, after_step) -> None:
        """Train ``epoch`` from step ``progress.step`` on, updating ``progress`` (an :class:`EpochProgress`)
        and calling ``after_step(loss)`` after each step; ``stop.check()`` after each; ``save_last()`` every
        ``--save-every-steps`` steps."""
        self.trainer.set_train(True)
        start = time.perf_counter() - progress.seconds
        for index in self.trainer.epoch_order(self.labels, epoch)[progress.step:]:
            loss = self.trainer.train_batch(self.features[index], self.labels[index])
            progress.count_step(loss, epoch, start, f"Lower {self.lr_hint}", context=" of the head-only epochs")
            after_step(loss)
            if self.save_every_steps and (epoch * self.steps_per_epoch + progress.step) % self.save_every_steps == 0:
                save_last()
            stop.check()

    @property
    def train_network(self) -> nn.Cell:
        """The cell of one training step (MindSpore callbacks' ``train_network``)."""
        return self.trainer.step

    def evaluation_weights(self) -> ContextManager[None]:
        """The head stage evaluates the weights it trains."""
        return contextlib.nullcontext()

    def evaluate(self) -> Dict[str, float]:
        """Top-1, top-5 and loss on the test features (extracted at the first call)."""
        if self.test_features is None:
            self.test_features = extract_features(self.net, self.test_pipeline, self.cpu_kernels)
        return self.trainer.evaluate(*self.test_features)

    def lr_columns(self) -> Dict[str, float]:
        """The head's latest learning rate (the stem does not train)."""
        return optim.lr_columns(self.optimizer, self.net)

    def parameters(self) -> List[ms.Parameter]:
        """What the last checkpoint holds: the whole network and the head's optimizer state."""
        params = {param.name: param for param in self.net.get_parameters()}
        for param in self.trainer.get_parameters():
            params.setdefault(param.name, param)
        return list(params.values())

    def restore(self, params: Dict[str, ms.Parameter], epochs_done: int, step: int) -> List[str]:
        """Load a head-stage last checkpoint's ``params``; continue at ``step`` of epoch ``epochs_done + 1``.

        Returns:
            The names of this stage's parameters that ``params`` lacks.
        """
        missing = assign_parameters(self.trainer, params)
        self.optimizer.global_step.set_data(
            ms.Tensor(np.array([epochs_done * self.steps_per_epoch + step], np.int32)))
        return missing

    @property
    def global_step(self) -> int:
        """Optimizer steps of this stage so far."""
        return int(self.optimizer.global_step.asnumpy().reshape(-1)[0])


class FullStage:
    """Every trainable layer on the augmented training pipeline: the whole run, or the epochs after
    ``--freeze-epochs`` (the LR schedule covers this stage's epochs). See :class:`HeadStage`
    for the other stage; both follow :class:`Stage`."""

    name = "full"

    def __init__(self, net, config: TrainConfig, dist: DistInfo, train: LoadedDataset, test: LoadedDataset,
                 num_classes: int, loss: nn.Cell, first_epoch: int):
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
        self.updates_per_epoch = updates_per_epoch(steps, config.grad_accum)
        rates = lr_schedule(config.lr_schedule, config.lr, config.min_lr, config.epochs - first_epoch,
                            self.updates_per_epoch, config.warmup_epochs)
        self.optimizer = optim.optimizer_for(net, config, rates)
        self.ema = EMA(net, config.ema) if config.ema else None
        self.train_step = build_train_step(
            net, loss, self.optimizer, config.amp, config.loss_scale,
            grad_accum=config.grad_accum, clip_grad=config.clip_grad, ema=self.ema, steps_per_epoch=steps)

    def run_epoch(self, epoch: int, progress: EpochProgress, stop: StopSignals, save_last: Callable[[], None],
                  after_step: Callable[[float], None]) -> None:
        """See :meth:`Stage.run_epoch` and :func:`run_epoch`."""
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
        return evaluation_weights(self.ema)

    def evaluate(self) -> Dict[str, float]:
        """Top-1, top-5 and loss on the selection split."""
        scores = evaluate(self.net, self.test_ds)
        self.train_step.set_train(True)
        return scores

    def lr_columns(self) -> Dict[str, float]:
        """The latest learning rates of the head and, when it trains, the stem."""
        return optim.lr_columns(self.optimizer, self.net)

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
        if isinstance(self.train_step, ComposedTrainStep):
            self.train_step.resume_at(step)
        return missing

    @property
    def global_step(self) -> int:
        """Optimizer updates of this stage so far."""
        return int(self.optimizer.global_step.asnumpy().reshape(-1)[0])


def build_stage(name: str, first_epoch: int, net, config: TrainConfig, dist: DistInfo, train: LoadedDataset,
                test: LoadedDataset, num_classes: int, loss: nn.Cell):
    """The :class:`FullStage` or :class:`HeadStage` that trains epochs ``first_epoch`` onwards with ``loss``
    (one for the run's stages, :func:`mindresnet.training.loss.loss_for`)."""
    if name == "full":
        return FullStage(net, config, dist, train, test, num_classes, loss, first_epoch)
    plain = create_dataset(config.dataset, config.data_dir, "train", preprocess=train.preprocess,
                           batch_size=config.batch_size, workers=config.workers, augment=False, shuffle=False,
                           drop_remainder=False, num_shards=dist.shards, shard_id=dist.shard_id,
                           val_split=config.val_split or 0.0, seed=config.seed)
    lr, flag = recipe.head_stage_lr(config)
    return HeadStage(net, config, plain.pipeline, test.pipeline, loss, recipe.head_epochs(config), lr, flag,
                     warmup_epochs=config.warmup_epochs if config.linear_probe else 0.0, shards=dist.shards)


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
