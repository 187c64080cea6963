"""The head trained alone on features computed once: pooled backbone features and the head's trainer."""
from __future__ import annotations

import time
from typing import Dict, List, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from mindresnet.data.balance import BalancedSampler
from mindresnet.metrics import classification_metrics, collect_outputs
from mindresnet.runtime import pad_rows
from mindresnet.training.loss import IGNORED_LABEL
from mindresnet.training.progress import epoch_seed
from mindresnet.training.step import switch_kernels


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
            (:func:`~mindresnet.training.step.switch_kernels`; not for a net that AMP will rewrite).

    Returns:
        (features N x C float32, labels N int32). Pass a dataset without augmentation: the
        features are computed once and reused every epoch.
    """
    switch_kernels(net, cpu_kernels=cpu_kernels)
    features, labels = collect_outputs(PooledFeatures(net), dataset)
    return features, labels.astype(np.int32)


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
        optimizer: optimizer over the classifier's parameters (see :func:`mindresnet.training.optim.build_optimizer`).
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
        # padding rows change nothing only for a per-row head and a loss that skips their label
        self.pad_short_batches = (isinstance(self.head, nn.Dense)
                                  and getattr(loss_fn, "ignore_index", None) == IGNORED_LABEL)

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
        """One optimizer step on a batch; returns its loss.

        A short (last) batch is padded to ``batch_size`` with rows whose label the loss ignores, so
        graph mode compiles one step, not two (the loss and its gradients are unchanged: tested).
        """
        if self.pad_short_batches:
            features = pad_rows(features, self.batch_size)
            labels = pad_rows(labels, self.batch_size, IGNORED_LABEL)
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
        return classification_metrics(logits, labels.astype(np.int64))
