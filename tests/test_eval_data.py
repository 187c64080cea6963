"""mindresnet.tools.eval_data: loading a trained checkpoint and the evaluation images that fit it."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import CLASS_NAMES
from mindresnet.checkpoint import read_checkpoint
from mindresnet.data import DataError
from mindresnet.tools.eval_data import build_eval_dataset


def test_load_trained_model_reads_metadata(model):
    net, meta = model
    assert (net.arch, meta.arch, meta.num_classes, meta.stem, meta.image_size) == \
        ("resnet18", "resnet18", 10, "cifar", 32)
    assert meta.class_names == CLASS_NAMES and meta.class_names_from == "metadata"
    assert meta.dataset == "cifar10" and len(meta.mean) == len(meta.std) == 3
    assert not net.training


def test_load_trained_model_takes_every_parameter_from_the_checkpoint(model, trained_ckpt):
    # The net is built without random initialisation, so each value must come from the file.
    net, _ = model
    stored, _ = read_checkpoint(trained_ckpt)
    for param in net.get_parameters():
        np.testing.assert_array_equal(param.asnumpy(), stored[param.name].asnumpy(), err_msg=param.name)


def test_eval_dataset_with_other_classes_is_refused(model, sample_dir):
    _, meta = model
    other = meta.replace(class_names=[f"c{i}" for i in range(10)])
    with pytest.raises(DataError, match="trained on"):
        build_eval_dataset(other, sample_dir, batch_size=32)
