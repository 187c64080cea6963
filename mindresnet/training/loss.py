"""The training loss: cross-entropy with label smoothing, soft targets and class weights."""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import nn

from mindresnet.data.balance import balanced_class_weights
from mindresnet.data.factory import split_labels
from mindresnet.data.holdout import Holdout

logger = logging.getLogger("mindresnet.training.loss")
IGNORED_LABEL = -100  # rows with this label add nothing to build_loss's loss (nn.CrossEntropyLoss's ignore_index)


def build_loss(label_smoothing: float = 0.0, class_weights: Optional[Sequence[float]] = None) -> nn.Cell:
    """Mean softmax cross-entropy on integer labels or soft targets (mixup/cutmix).

    ``class_weights`` scale each class's term (PyTorch's ``weight``: with integer labels the mean
    divides by the summed weights of the batch's labels, with soft targets by the batch size).
    """
    weight = ms.Tensor(np.asarray(class_weights, np.float32)) if class_weights is not None else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


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
    return build_loss(config.label_smoothing, class_weights_for(config, num_classes))
