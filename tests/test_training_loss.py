"""mindresnet.training.loss: label smoothing, and class weights (--class-weights balanced) in the loss."""
from __future__ import annotations

import math

import mindspore as ms
import numpy as np
import pytest

from mindresnet.data.balance import balanced_class_weights
from mindresnet.data.factory import split_labels
from mindresnet.data.holdout import Holdout
from mindresnet.training.config import TrainConfig
from mindresnet.training.loss import build_loss, class_weights_for, loss_for


def test_label_smoothing_changes_the_loss():
    logits = ms.Tensor(np.array([[4.0, 0.0, -2.0], [0.5, 2.0, 0.0]], np.float32))
    labels = ms.Tensor(np.array([0, 1], np.int32))
    plain = float(build_loss(0.0)(logits, labels).asnumpy())
    smooth = float(build_loss(0.2)(logits, labels).asnumpy())
    log_probs = logits.asnumpy() - np.log(np.exp(logits.asnumpy()).sum(axis=1, keepdims=True))
    expected = -(0.8 * log_probs[[0, 1], [0, 1]] + 0.2 / 3 * log_probs.sum(axis=1)).mean()
    assert smooth == pytest.approx(expected, rel=1e-5) and smooth > plain


@pytest.mark.parametrize("options", [dict(), dict(label_smoothing=0.1), dict(mixup=0.2, cutmix=1.0)])
def test_weighted_loss_counts_rare_mistakes_more(imbalanced_root, options):
    import mindspore as ms

    weighted = loss_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root), class_weights="balanced",
                                    **options), 3)
    plain = loss_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root), **options), 3)
    logits = ms.Tensor(np.array([[4.0, 0.0, 0.0]] * 2, np.float32))  # both images called "common"
    labels = np.array([0, 2], np.int32)  # one common (right), one rare (wrong)
    targets = ms.Tensor(np.eye(3, dtype=np.float32)[labels] if options.get("mixup") else labels)
    weighted_loss, plain_loss = float(weighted(logits, targets).asnumpy()), float(plain(logits, targets).asnumpy())
    assert math.isfinite(weighted_loss) and weighted_loss > 1.3 * plain_loss
    if not options:  # integer labels: the weighted mean of the two images' losses
        losses = -np.log(np.exp([4.0, 0.0]) / (np.exp(4.0) + 2))
        w_common, w_rare = 32 / (3 * 24), 32 / (3 * 2)
        assert weighted_loss == pytest.approx((w_common * losses[0] + w_rare * losses[1]) / (w_common + w_rare),
                                              rel=1e-5)


def test_class_weights_count_only_the_images_trained_on(imbalanced_root):
    labels = split_labels("folder", imbalanced_root)
    whole = class_weights_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root), class_weights="balanced"), 3)
    np.testing.assert_allclose(whole, balanced_class_weights(labels, 3))
    held = class_weights_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root), class_weights="balanced",
                                         val_split=0.25, seed=4), 3)
    kept = labels[Holdout(0.25, 4, "train").indices(labels)]
    assert np.bincount(kept).tolist() == [18, 4, 1]
    np.testing.assert_allclose(held, [23 / 54, 23 / 12, 23 / 3], rtol=1e-6)
    assert class_weights_for(TrainConfig(dataset="folder", data_dir=str(imbalanced_root)), 3) is None
