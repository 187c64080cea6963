"""ImageNet out of the box: weights with a 1000- or 1001-class head predict ImageNet class names."""
from __future__ import annotations

import json

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from mindresnet.tools import predict
from mindresnet.data.imagenet import imagenet_class_names
from mindresnet.models import create_model
from mindresnet.tools.eval_data import load_trained_model


def mindcv_named_checkpoint(path, num_classes: int, favourite: int):
    """A resnet18 with MindCV's names (bn1, classifier) whose head always prefers class ``favourite``."""
    net = create_model("resnet18", num_classes=num_classes)
    bias = np.zeros(num_classes, np.float32)
    bias[favourite] = 50.0
    net.fc.bias.set_data(ms.Tensor(bias))
    rename = {"fc.": "classifier.", "norm.": "bn1."}
    entries = []
    for param in net.get_parameters():
        name = param.name
        for ours, theirs in rename.items():
            if name.startswith(ours):
                name = theirs + name[len(ours):]
        entries.append({"name": name.replace(".norm", ".bn"), "data": param})
    ms.save_checkpoint(entries, str(path))
    return path


def test_imagenet_names_ship_with_the_package():
    names = imagenet_class_names(1000)
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[417] == "balloon" and names[0] == "tench"
    with_background = imagenet_class_names(1001)
    assert with_background[418] == "balloon" and len(with_background) == 1001


@pytest.mark.parametrize("num_classes, favourite", [(1000, 417), (1001, 418)])
def test_predict_pretrained_file_prints_imagenet_classes(tmp_path, capsys, num_classes, favourite):
    weights = mindcv_named_checkpoint(tmp_path / "r18.ckpt", num_classes, favourite)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "red.png")
    code = predict.main([str(tmp_path / "red.png"), "--arch", "resnet18", "--pretrained", str(weights), "--json",
                         "--topk", "1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["predictions"][0]["top"][0]["class"] == "balloon"


def test_trained_model_without_names_gets_imagenet_names(tmp_path):
    weights = mindcv_named_checkpoint(tmp_path / "r18.ckpt", 1000, 417)
    _, meta = load_trained_model(weights, arch="resnet18", num_classes=1000)
    assert meta.class_names[417] == "balloon" and meta.class_names_from == "ImageNet"
    assert meta.convention == "mindcv"  # detected from the MindCV names


def test_predict_pretrained_needs_arch(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert predict.main([str(tmp_path / "x.png"), "--pretrained", "true"]) == 1
    assert "--pretrained needs --arch" in capsys.readouterr().err
