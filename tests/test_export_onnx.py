"""ONNX exports run by onnxruntime (CPU) give MindSpore's own eval outputs.

Each case builds a checkpoint of random weights and random BatchNorm statistics in one padding
convention (no dataset needed), loads it as ``predict``/``export`` do, exports ONNX at batch 1 and at batch 3, checks
the file with ``onnx.checker`` and compares onnxruntime's logits and top-1 with the network's
eval-mode outputs (PyNative) on the same random inputs.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from mindresnet.tools import export
from mindresnet.models.conventions import CONVENTIONS, DEFAULT_CONVENTION
from mindresnet.tools.eval_data import load_trained_model
from test_export import MEAN, STD, random_batch, write_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

EXPORTED_BATCH = 3
RELATIVE_TOLERANCE = 1e-4  # of the largest logit


def run_onnx(path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [node.name for node in session.get_inputs()]
    return session.run(None, {name: batch})[0]


def eval_logits(net, batch: np.ndarray) -> np.ndarray:
    ms.set_context(mode=ms.PYNATIVE_MODE)  # no graph compile for a reference pass
    net.set_train(False)
    return net(ms.Tensor(batch)).asnumpy()


def assert_same_predictions(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and np.ptp(want) > 1.0  # logits that differ between classes and images
    error = np.abs(got - want).max() / np.abs(want).max()
    assert error <= RELATIVE_TOLERANCE, f"largest logit difference {error:.2e} of the largest logit"
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))


# Every convention with both stems on ResNet-18; the bottleneck nets in the default convention with
# both stems, and ResNet-50 (ImageNet stem: the stem pool differs too) in every other convention.
CASES = ([("resnet18", stem, convention) for convention in CONVENTIONS for stem in ("cifar", "imagenet")]
         + [(arch, stem, DEFAULT_CONVENTION) for arch in ("resnet50", "resnext50_32x4d")
            for stem in ("cifar", "imagenet")]
         + [("resnet50", "imagenet", convention) for convention in CONVENTIONS if convention != DEFAULT_CONVENTION])


@pytest.mark.parametrize("arch,stem,convention", CASES)
def test_onnx_runtime_gives_mindspores_outputs(arch, stem, convention, tmp_path):
    net, meta = load_trained_model(write_checkpoint(tmp_path / f"{arch}.ckpt", arch, stem, convention=convention))
    assert (meta.convention, net.convention) == (convention, convention), "the checkpoint's convention was not rebuilt"
    for batch_size in (1, EXPORTED_BATCH):
        path = export.export_model(net, tmp_path / f"b{batch_size}.onnx", "ONNX", batch_size, meta.image_size)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        images = random_batch(batch_size, meta.image_size, seed=batch_size)
        assert_same_predictions(run_onnx(path, images), eval_logits(net, images))


@pytest.mark.slow
def test_onnx_resnet50_at_224(tmp_path):
    net, meta = load_trained_model(write_checkpoint(tmp_path / "r50.ckpt", "resnet50", "imagenet", 224))
    path = export.export_model(net, tmp_path / "r50.onnx", "ONNX", 2, meta.image_size)
    images = random_batch(2, 224)
    assert_same_predictions(run_onnx(path, images), eval_logits(net, images))


def test_export_command_prints_what_onnxruntime_expects(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "resnet18-best.ckpt")
    assert export.main(["--ckpt", str(ckpt), "--format", "ONNX", "--batch-size", "2"]) == 0
    facts = {line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()[1:]}
    session = ort.InferenceSession(str(tmp_path / "resnet18-best.onnx"), providers=["CPUExecutionProvider"])
    (feed,), (output,) = session.get_inputs(), session.get_outputs()
    assert facts["input"] == f"{feed.name}: float32 {feed.shape} (NCHW, RGB)" and feed.type == "tensor(float)"
    assert facts["output"].startswith(f"float32 {output.shape} logits")
    assert facts["mean"] == ", ".join(f"{v:g}" for v in MEAN) and facts["std"] == ", ".join(f"{v:g}" for v in STD)
