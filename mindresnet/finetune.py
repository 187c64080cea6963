"""Fine-tuning pieces: frozen backbones, per-layer learning rates, linear probes, weight averaging.

* Freezing the backbone is the network's own
  (:meth:`~mindresnet.models.resnet.ResNet.freeze_backbone`: weights and BatchNorm statistics).
* :func:`lr_scale` is timm's layer decay over the network's parameter groups
  (:meth:`~mindresnet.models.resnet.ResNet.param_group`): the head learns at the base rate (times a
  head scale), the last stage at ``D``, the one before at ``D**2`` ... the stem at ``D**5``.
* :func:`extract_features` and :class:`HeadTrainer` train the head on features computed once;
  :class:`HeadStage` runs them as ``mindresnet.train``'s linear probe and as the head-only first
  stage of ``--freeze-epochs`` (linear probe, then fine-tune: Kumar et al., "Fine-Tuning can
  Distort Pretrained Features", 2022).
* :class:`EMA` keeps an exponential moving average of the weights for evaluation.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import ContextManager, Dict, Iterator, List, Optional, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from mindresnet import engine
from mindresnet.kernels import use_cpu_kernels
from mindresnet.checkpoint import assign_parameters
from mindresnet.data.balance import BalancedSampler, balanced_class_weights
from mindresnet.data.factory import split_labels
from mindresnet.data.holdout import Holdout
from mindresnet.models.resnet import HEAD_GROUP, ResNet
from mindresnet.preemption import epoch_seed

logger = logging.getLogger("mindresnet.finetune")


def lr_scale(name: str, layer_decay: float = 1.0, head_lr_scale: float = 1.0) -> float:
    """Learning-rate multiplier of parameter ``name``: ``layer_decay ** (head group - its group)``, times
    ``head_lr_scale`` for the head (timm's ``--layer-decay`` for a ResNet's stem, 4 stages and head)."""
    group = ResNet.param_group(name)
    scale = layer_decay ** (HEAD_GROUP - group)
    return scale * head_lr_scale if group == HEAD_GROUP else scale


def optimizer_for(net: nn.Cell, config, rates) -> nn.Optimizer:
    """The optimizer of ``config`` (a TrainConfig) over ``net``'s trainable parameters: per-step
    ``rates``, layer decay and head scale, and the loss scale its train step expects."""
    custom_step = engine.uses_composed_step(config.optimizer, config.amp, config.grad_accum, config.clip_grad)
    return engine.build_optimizer(
        net.trainable_params(), config.optimizer, rates, config.momentum, config.weight_decay,
        engine.optimizer_loss_scale(config.optimizer, config.amp, config.loss_scale, custom_step),
        lr_scale=lambda name: lr_scale(name, config.layer_decay, config.head_lr_scale))


def class_weights_for(config, num_classes: int) -> Optional[np.ndarray]:
    """``--class-weights balanced``: inverse-frequency weights of the classes of the images ``config`` (a
    TrainConfig) trains on, the training split less its ``--val-split`` hold-out; None without the flag."""
    if not config.class_weights:
        return None
    labels = split_labels(config.dataset, config.data_dir)
    if config.val_split:
        labels = labels[Holdout(config.val_split, config.seed, "train").indices(labels)]
    weights = balanced_class_weights(labels, num_classes)
    logger.info("class weights (%s): %s", config.class_weights, np.array2string(weights, precision=3))
    return weights


def loss_for(config, num_classes: int) -> nn.Cell:
    """The training loss of ``config`` (a TrainConfig): cross-entropy with its label smoothing and
    :func:`class_weights_for`."""
    return engine.build_loss(config.label_smoothing, class_weights_for(config, num_classes))


def lr_columns(optimizer: nn.Optimizer, net: nn.Cell) -> Dict[str, float]:
    """The latest learning rates of the head (``lr``) and, when it trains, the stem (``lr_stem``)."""
    columns = {"lr": engine.current_lr(optimizer, net.get_classifier().weight)}
    if net.conv1.weight.requires_grad:
        columns["lr_stem"] = engine.current_lr(optimizer, net.conv1.weight)
    return columns


class PooledFeatures(nn.Cell):
    """The backbone of a ResNet with global average pooling: images -> (N, features)."""

    def __init__(self, net: nn.Cell):
        super().__init__(auto_prefix=False)  # a prefix would rename net's parameters
        self.net = net

    def construct(self, x):
        return ops.mean(self.net.forward_features(x), (2, 3))


def extract_features(net: nn.Cell, dataset, cpu_kernels: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features of every image of ``dataset`` (BatchNorm in inference mode).

    Args:
        cpu_kernels: on CPU, switch ``net``'s convolutions to mindresnet's CPU kernels in place
            (see :func:`mindresnet.engine.build_train_step`; not for a net that AMP will rewrite).

    Returns:
        (features N x C float32, labels N int32). Pass a dataset without augmentation: the
        features are computed once and reused every epoch.
    """
    if cpu_kernels and ms.get_context("device_target") == "CPU":
        use_cpu_kernels(net)
    backbone = PooledFeatures(net)
    backbone.set_train(False)
    features, labels = [], []
    for images, batch_labels in dataset.create_tuple_iterator(num_epochs=1):
        features.append(backbone(images).asnumpy().astype(np.float32))
        labels.append(batch_labels.asnumpy())
    if not features:
        raise ValueError("The dataset to extract features from is empty.")
    return np.concatenate(features), np.concatenate(labels).astype(np.int32)


class _HeadWithLoss(nn.Cell):
    def __init__(self, head: nn.Cell, loss_fn: nn.Cell):
        super().__init__(auto_prefix=False)  # keep the head's parameter names
        self.head = head
        self.loss_fn = loss_fn

    def construct(self, features, labels):
        return self.loss_fn(self.head(features), labels)


class HeadTrainer(nn.Cell):
    """Trains the classifier of ``net`` on cached features, one compiled step per batch.

    Its parameters (the head and its optimizer state) are saved and restored like a train step's.
    Epoch ``e`` visits the features in the order :meth:`epoch_order` gives, the same in every run of
    this seed, so an interrupted epoch can resume at its step: a shuffle, or with ``balanced`` the
    class-balanced draw of :class:`~mindresnet.data.balance.BalancedSampler` (``--sampler balanced``).

    Args:
        net: the ResNet whose classifier is trained in place.
        optimizer: optimizer over the classifier's parameters (see :func:`engine.build_optimizer`).
        loss_fn: loss on (logits, labels).
        batch_size: features per step.
        seed: seed of the per-epoch order.
        balanced: draw each epoch class-balanced instead of shuffling.
    """

    def __init__(self, net: nn.Cell, optimizer: nn.Optimizer, loss_fn: nn.Cell, batch_size: int, seed: int = 1,
                 balanced: bool = False):
        super().__init__(auto_prefix=False)
        self.head = net.get_classifier()
        self.optimizer = optimizer
        self.step = nn.TrainOneStepCell(_HeadWithLoss(self.head, loss_fn), optimizer)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.balanced = bool(balanced)
        self.epochs_run = 0

    def steps_per_epoch(self, count: int) -> int:
        """Steps of one epoch over ``count`` features (the last smaller batch included)."""
        return -(-count // self.batch_size)

    def epoch_order(self, labels: np.ndarray, epoch: int) -> List[np.ndarray]:
        """The feature indices of each step of ``epoch`` over features of ``labels``, seeded by (seed, epoch),
        in batches."""
        count = len(labels)
        if self.balanced:
            order = BalancedSampler(labels).epoch_order(epoch_seed(self.seed, epoch))
        else:
            order = np.random.default_rng([self.seed, int(epoch)]).permutation(count)
        return [order[first:first + self.batch_size] for first in range(0, count, self.batch_size)]

    def train_batch(self, features: np.ndarray, labels: np.ndarray) -> float:
        """One optimizer step on a batch; returns its loss."""
        return float(self.step(ms.Tensor(features), ms.Tensor(labels)).asnumpy())

    def run_epoch(self, features: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
        """One shuffled pass over the features (the next epoch of this trainer); returns (mean loss, seconds)."""
        start = time.perf_counter()
        self.step.set_train(True)
        losses = [self.train_batch(features[index], labels[index])
                  for index in self.epoch_order(labels, self.epochs_run)]
        self.epochs_run += 1
        return float(np.mean(losses)), time.perf_counter() - start

    def evaluate(self, features: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
        """Top-1, top-5 and loss of the head on cached (eval-mode) features."""
        logits = self.head(ms.Tensor(features)).asnumpy().astype(np.float32)
        return engine.classification_metrics(logits, labels.astype(np.int64))


class HeadStage:
    """Head-only epochs on features computed once: the linear probe, and the first stage of ``--freeze-epochs``.

    The backbone is frozen (:meth:`ResNet.freeze_backbone`); its pooled features of the un-augmented
    training images are extracted once (eval-mode BatchNorm) and kept in memory, those of the test
    images at the first evaluation. Each epoch then trains the classifier on them step by step; a stop
    signal is honoured after any step and the epoch resumes there. The head's schedule runs over
    this stage's epochs only; no mixing, EMA, accumulation or clipping applies here.

    One of the two stages of ``mindresnet.train.fit`` (the other is ``train.FullStage``): both
    offer ``run_epoch``, ``evaluation_weights``, ``evaluate``, ``lr_columns``, ``parameters``,
    ``restore``, ``global_step``, ``train_network`` and ``train_dataset``.

    Args:
        net: the ResNet (its head trains in place).
        config: the run's ``TrainConfig`` (optimizer, momentum, weight decay, schedule, batch size,
            label smoothing, seed, ``--amp``, ``--save-every-steps``).
        train_pipeline: un-augmented, unshuffled training batches (this rank's shard).
        test_pipeline: evaluation batches.
        epochs: epochs of this stage (it starts at epoch 0).
        peak_lr: the head's peak learning rate; ``lr_flag`` names the flag that set it.
        warmup_epochs: epochs of linear warm-up of the head's rate.
        shards: data-parallel ranks (for the images/s figure).
    """

    name = "head"
    first_epoch = 0

    def __init__(self, net: nn.Cell, config, train_pipeline, test_pipeline, epochs: int, peak_lr: float,
                 lr_flag: str, warmup_epochs: float = 0.0, shards: int = 1):
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
        rates = engine.lr_schedule(config.lr_schedule, peak_lr, min(config.min_lr, peak_lr), self.end_epoch,
                                   self.steps_per_epoch, warmup_epochs)
        head = net.get_classifier()
        self.optimizer = engine.build_optimizer(head.trainable_params(), config.optimizer, rates, config.momentum,
                                                config.weight_decay)
        self.trainer = HeadTrainer(net, self.optimizer, loss_for(config, head.weight.shape[0]),
                                   config.batch_size, config.seed, balanced=config.sampler == "balanced")

    def run_epoch(self, epoch: int, progress, stop, save_last, after_step) -> None:
        """Train ``epoch`` from step ``progress.step`` on, updating ``progress`` (a ``preemption.EpochProgress``)
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
        return lr_columns(self.optimizer, self.net)

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


class EMA(nn.Cell):
    """Exponential moving average of every parameter of ``net`` (BatchNorm statistics included).

    ``update()`` after each optimizer step: ``avg = d * avg + (1 - d) * param`` with
    ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (TensorFlow's ``num_updates``
    warm-up, so short fine-tunes are not dominated by the initial weights). It only reads the
    weights after the optimizer has applied its (unscaled) update, so AMP loss scaling cannot
    reach the average (the double scaling of mindcv#604 came from EMA inside a loss-scaled step).
    The averages are parameters named ``ema.<name>``: they are saved in, and resumed from, the
    last checkpoint.
    """

    def __init__(self, net: nn.Cell, decay: float):
        super().__init__(auto_prefix=False)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.weights = ms.ParameterTuple(net.get_parameters())
        self.averages = self.weights.clone(prefix="ema", init="same")
        self.updates = ms.Parameter(ms.Tensor(np.zeros([1], np.float32)), name="ema.updates", requires_grad=False)
        self.hyper_map = ops.HyperMap()

    def construct(self, decay):
        return self.hyper_map(ops.partial(_average, decay), self.averages, self.weights)

    def update(self) -> None:
        """Fold the current weights into the average."""
        count = float(self.updates.asnumpy()[0])
        self(ms.Tensor(min(self.decay, (1.0 + count) / (10.0 + count)), ms.float32))
        self.updates.set_data(ms.Tensor(np.array([count + 1.0], np.float32)))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block, the network's parameters hold the averages; the raw weights return after."""
        raw = [param.asnumpy().copy() for param in self.weights]
        for param, average in zip(self.weights, self.averages):
            param.set_data(ms.Tensor(average.asnumpy(), param.dtype))
        try:
            yield
        finally:
            for param, value in zip(self.weights, raw):
                param.set_data(ms.Tensor(value, param.dtype))


_average = ops.MultitypeFuncGraph("ema_average")


@_average.register("Tensor", "Tensor", "Tensor")
def _average_one(decay, average, weight):
    return ops.assign(average, average * decay + ops.cast(weight, average.dtype) * (1.0 - decay))


@contextlib.contextmanager
def evaluation_weights(ema: Optional[EMA]) -> Iterator[None]:
    """The weights to evaluate and save as best: the EMA's averages when there is one, else the raw ones."""
    if ema is None:
        yield
    else:
        with ema.applied():
            yield
