"""mindresnet.export: MINDIR round trip, ONNX file, clear errors for formats the backend cannot write."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from mindresnet import export
from mindresnet.inference import load_trained_model


@pytest.fixture(scope="module")
def model(trained_ckpt):
    return load_trained_model(trained_ckpt)


def test_mindir_round_trip_gives_the_same_outputs(model, tmp_path):
    net, meta = model
    out = export.export_model(net, tmp_path / "model", "MINDIR", batch_size=2, image_size=meta["image_size"])
    assert out == tmp_path / "model.mindir" and [p.name for p in tmp_path.iterdir()] == ["model.mindir"]
    graph = ms.nn.GraphCell(ms.load(str(out)))
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    np.testing.assert_allclose(graph(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-5)


def test_onnx_export_writes_an_onnx_model(model, tmp_path):
    net, _ = model
    out = export.export_model(net, tmp_path / "model.onnx", "onnx")
    data = out.read_bytes()
    # An ONNX ModelProto starts with field 1 (ir_version, varint); the producer name follows.
    assert out.name == "model.onnx" and data[:1] == b"\x08" and b"MindSpore" in data[:64]


def test_export_cli_writes_next_to_the_checkpoint_by_default(trained_ckpt, tmp_path, capsys):
    ckpt = tmp_path / "resnet18-best.ckpt"
    ckpt.write_bytes(trained_ckpt.read_bytes())
    assert export.main(["--ckpt", str(ckpt), "--format", "MINDIR"]) == 0
    assert (tmp_path / "resnet18-best.mindir").is_file()
    assert str(tmp_path / "resnet18-best.mindir") in capsys.readouterr().out


def test_air_on_cpu_is_a_clear_error(trained_ckpt, tmp_path, capsys):
    code = export.main(["--ckpt", str(trained_ckpt), "--format", "AIR", "--out", str(tmp_path / "m.air")])
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
