"""CheckpointMeta: the one type of checkpoint metadata, and checkpoints written before it."""
from __future__ import annotations

import json

import mindspore as ms
import numpy as np
import pytest

from mindresnet.checkpoint import META_KEY, read_checkpoint, save_checkpoint
from mindresnet.checkpoint_meta import DEFAULT_CONVENTION, CheckpointMeta
from mindresnet.data.preprocess import Preprocess, cifar10_preprocess, imagenet_preprocess
from mindresnet.errors import CheckpointError
from mindresnet.models import create_model
from mindresnet.tools.eval_data import load_trained_model

from conftest import CLASS_NAMES

# The metadata keys mindresnet.train wrote before CheckpointMeta existed (train.py of mindresnet 0.1.0).
PRE_META_BEST = {"arch": "resnet18", "num_classes": 10, "stem": "cifar", "image_size": 32,
                 "mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.201], "class_names": CLASS_NAMES,
                 "dataset": "cifar10", "mindresnet": "0.1.0", "epoch": 3, "accuracy": 0.41}


def test_round_trip_through_a_checkpoint(tmp_path):
    meta = CheckpointMeta(arch="resnet18", num_classes=10, stem="cifar", preprocess=cifar10_preprocess(),
                          class_names=CLASS_NAMES,
                          dataset="cifar10", epoch=2, best_accuracy=0.5, extra={"future_key": [1, 2]})
    path = save_checkpoint(ms.nn.Dense(3, 2), tmp_path / "m.ckpt", meta)
    _, stored = read_checkpoint(path)
    assert stored == meta
    assert stored.extra == {"future_key": [1, 2]}  # keys of a newer version survive a rewrite


def test_checkpoint_from_before_the_type_still_loads(tmp_path):
    net = create_model("resnet18", 10, stem="cifar")
    path = tmp_path / "old.ckpt"
    ms.save_checkpoint(net, str(path), append_dict={META_KEY: json.dumps(PRE_META_BEST)})
    loaded, meta = load_trained_model(path)
    assert (meta.arch, meta.num_classes, meta.stem, meta.image_size, meta.epoch) == ("resnet18", 10, "cifar", 32, 3)
    assert meta.convention == DEFAULT_CONVENTION and meta.accuracy == 0.41 and meta.class_names_from == "metadata"
    x = ms.Tensor(np.random.default_rng(0).random((2, 3, 32, 32), np.float32))
    net.set_train(False)
    np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stored, message", [
    ({"num_classes": 10}, "without arch"),
    ({"arch": "resnet18", "num_classes": "ten"}, "malformed mindresnet metadata"),
    ({"arch": "resnet18", "num_classes": 10, "mean": 3}, "malformed mindresnet metadata"),
])
def test_bad_metadata_names_the_file(stored, message):
    with pytest.raises(CheckpointError, match=f"Checkpoint x.ckpt .*{message}"):
        CheckpointMeta.from_dict(stored, "x.ckpt")


def test_class_names_from_is_not_stored():
    meta = CheckpointMeta(arch="resnet18", num_classes=2, class_names_from="metadata")
    assert "class_names_from" not in meta.to_dict() and "extra" not in meta.to_dict()


@pytest.mark.parametrize("dataset, size, expected", [
    ("cifar10", 64, cifar10_preprocess(64)),  # evaluated as trained: resized straight, no crop
    ("folder", 32, imagenet_preprocess(32)),  # resize to 36 and centre crop, whatever the size
    (None, 32, imagenet_preprocess(32)),  # no dataset named: the imagenet stem's kind
])
def test_metadata_from_before_the_preprocess_record_derives_it_from_its_kind(tmp_path, dataset, size, expected):
    rule = cifar10_preprocess() if dataset == "cifar10" else imagenet_preprocess()
    old = {"arch": "resnet18", "num_classes": 10, "stem": "imagenet", "image_size": size, "mean": list(rule.mean),
           "std": list(rule.std), "class_names": CLASS_NAMES, "dataset": dataset, "mindresnet": "0.2.0"}
    path = tmp_path / "old.ckpt"
    ms.save_checkpoint(create_model("resnet18", 10), str(path), append_dict={META_KEY: json.dumps(old)})
    _, meta = load_trained_model(path)
    assert meta.preprocess == expected and meta.image_size == size and not meta.extra


def test_stored_preprocess_wins_and_older_readers_still_find_size_mean_std():
    rule = Preprocess(40, "shorter", 0.8, "bicubic", (0.5,) * 3, (0.25,) * 3)
    stored = CheckpointMeta("resnet18", 10, dataset="cifar10", preprocess=rule).to_dict()
    assert (stored["image_size"], stored["mean"], stored["std"]) == (40, [0.5] * 3, [0.25] * 3)
    assert CheckpointMeta.from_dict(stored, "x.ckpt").preprocess == rule
