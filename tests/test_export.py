"""mindresnet.export: MINDIR round trip (fixed and dynamic batch), the printed input contract, clear errors.

The checkpoints are built here (random weights, randomised BatchNorm statistics, training's
metadata), so these tests need no dataset. ONNX against onnxruntime: test_export_onnx.py.
"""
from __future__ import annotations

import stat
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from conftest import CLASS_NAMES
from mindresnet.tools import export
from mindresnet.checkpoint import save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.data.preprocess import Preprocess, imagenet_preprocess
from mindresnet.tools.eval_data import load_trained_model
from mindresnet.models import create_model

MEAN, STD = [0.5, 0.25, 0.125], [0.2, 0.3, 0.4]  # not any dataset's, so the printout must come from the file


def write_checkpoint(path: Path, arch: str = "resnet18", stem: str = "cifar", image_size: int = 32,
                     seed: int = 0, **model_kwargs) -> Path:
    """A checkpoint as training writes it, of random weights and random BatchNorm statistics.

    Moving means and variances far from their 0/1 defaults make an exporter that drops or
    misapplies them visible in the outputs.
    """
    rng = np.random.default_rng(seed)
    ms.set_seed(seed)
    net = create_model(arch, num_classes=len(CLASS_NAMES), stem=stem, **model_kwargs)
    for param in net.get_parameters():
        leaf = param.name.rpartition(".")[2]
        if leaf in ("moving_mean", "beta"):
            param.set_data(ms.Tensor(rng.normal(0.0, 0.3, param.shape).astype(np.float32)))
        elif leaf in ("moving_variance", "gamma"):
            param.set_data(ms.Tensor(rng.uniform(0.5, 1.5, param.shape).astype(np.float32)))
    meta = CheckpointMeta(arch=arch, num_classes=len(CLASS_NAMES), stem=stem,
                          preprocess=Preprocess(image_size, "squash", 1.0, mean=MEAN, std=STD),
                          class_names=CLASS_NAMES, dataset="cifar10", **model_kwargs)
    return save_checkpoint(net, path, meta)


def random_batch(batch: int, size: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "resnet18-best.ckpt")


@pytest.fixture(scope="module")
def model(ckpt):
    return load_trained_model(ckpt)


def test_mindir_round_trip_gives_the_same_outputs(model, tmp_path):
    net, meta = model
    out = export.export_model(net, tmp_path / "model", "MINDIR", batch_size=2, image_size=meta.image_size)
    assert out == tmp_path / "model.mindir" and [p.name for p in tmp_path.iterdir()] == ["model.mindir"]
    graph = ms.nn.GraphCell(ms.load(str(out)))
    x = ms.Tensor(random_batch(2))
    np.testing.assert_allclose(graph(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-5)


def test_mindir_with_dynamic_batch_takes_any_batch_size(model, tmp_path):
    net, _ = model
    graph = ms.nn.GraphCell(ms.load(str(export.export_model(net, tmp_path / "m", "MINDIR", dynamic_batch=True))))
    for batch in (1, 3):
        x = ms.Tensor(random_batch(batch, seed=batch))
        np.testing.assert_allclose(graph(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-5)


def test_onnx_with_dynamic_batch_is_a_clear_error(ckpt, model, tmp_path, capsys):
    with pytest.raises(export.ExportError, match="--dynamic-batch is not possible with --format ONNX"):
        export.export_model(model[0], tmp_path / "m.onnx", "ONNX", dynamic_batch=True)
    code = export.main(["--ckpt", str(ckpt), "--format", "onnx", "--dynamic-batch", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "--batch-size" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_export_cli_writes_next_to_the_checkpoint_and_prints_the_input_contract(ckpt, tmp_path, capsys):
    copy = tmp_path / "resnet18-best.ckpt"
    copy.write_bytes(ckpt.read_bytes())
    assert export.main(["--ckpt", str(copy), "--format", "MINDIR", "--batch-size", "4"]) == 0
    assert (tmp_path / "resnet18-best.mindir").is_file()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"exported resnet18 (MINDIR) to {tmp_path / 'resnet18-best.mindir'}"
    facts = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert facts["input"] == "x: float32 [4, 3, 32, 32] (NCHW, RGB)"
    assert facts["resize"] == "straight to 32x32 (bilinear)"
    assert facts["mean"] == "0.5, 0.25, 0.125" and facts["std"] == "0.2, 0.3, 0.4"
    assert facts["output"].startswith("float32 [4, 10] logits")
    assert facts["classes"] == "from the checkpoint's metadata: " + ", ".join(CLASS_NAMES)


def test_contract_of_a_large_input_and_dynamic_batch(model):
    net, meta = model
    text = export.deployment_contract(net, meta.replace(preprocess=imagenet_preprocess(224), class_names_from=None), dynamic_batch=True)
    assert "input    x: float32 [N, 3, 224, 224] (NCHW, RGB), N any batch size" in text
    assert "shorter side to 256 px (bilinear), then centre crop 224x224" in text
    assert "classes  from nowhere (generic class_<i> names)" in text


def test_onnx_export_keeps_the_folder_permissions(model, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    out = export.export_model(model[0], folder / "model.onnx", "onnx")
    assert out.read_bytes()[:1] == b"\x08"  # an ONNX ModelProto starts with field 1 (ir_version)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # MindSpore's ONNX writer alone sets it to 0700
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_air_on_cpu_is_a_clear_error(ckpt, tmp_path, capsys):
    code = export.main(["--ckpt", str(ckpt), "--format", "AIR", "--out", str(tmp_path / "m.air")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "Ascend" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_backend_refusal_becomes_an_export_error(model, tmp_path, monkeypatch):
    # Skip our own AIR check to see what MindSpore itself does on CPU: it raises, and nothing is left behind.
    monkeypatch.setattr(export, "ASCEND_ONLY", ())
    with pytest.raises(export.ExportError, match="could not export AIR on CPU.*Ascend"):
        export.export_model(model[0], tmp_path / "m", "AIR", device="CPU")
    assert list(tmp_path.iterdir()) == []


def test_wrong_extension_and_unknown_format_are_refused(model, tmp_path):
    with pytest.raises(export.ExportError, match="another format"):
        export.export_model(model[0], tmp_path / "m.onnx", "MINDIR")
    with pytest.raises(export.ExportError, match="not one of"):
        export.export_model(model[0], tmp_path / "m", "TFLITE")
