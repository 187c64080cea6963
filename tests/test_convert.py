"""python -m mindresnet.convert, and reading PyTorch files safely."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from mindresnet.checkpoint import read_checkpoint
from mindresnet.tools.convert import convert, infer_arch, main
from mindresnet.errors import CheckpointError
from mindresnet.models import create_model
from mindresnet.models.weight_files import read_weights


@pytest.fixture
def torchvision_resnet18(tmp_path):
    """(torchvision resnet18 in eval mode with non-trivial BatchNorm statistics, its .pth)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.2, 1.0)
    path = tmp_path / "resnet18-torchvision.pth"
    torch.save(model.state_dict(), str(path))
    return model.eval(), path


def test_convert_writes_a_checkpoint_that_rebuilds_the_torch_network(tmp_path, torchvision_resnet18, capsys):
    import torch

    model, source = torchvision_resnet18
    out = tmp_path / "converted.ckpt"
    assert main([str(source), str(out)]) == 0
    assert "resnet18, 1000 classes, imagenet stem, torch convention" in capsys.readouterr().out
    _, meta = read_checkpoint(out)
    assert (meta.arch, meta.num_classes, meta.stem, meta.convention) == ("resnet18", 1000, "imagenet", "torch")
    assert meta.class_names[417] == "balloon"
    net = create_model("resnet18", pretrained=str(out))  # the convention comes back from the metadata
    assert net.convention == "torch"
    net.set_train(False)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = net(ms.Tensor(x)).asnumpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4


def test_convert_takes_an_explicit_arch_and_convention(tmp_path, torchvision_resnet18):
    _, source = torchvision_resnet18
    _, meta = convert(source, tmp_path / "mindcv.ckpt", arch="resnet18", convention="mindcv")
    assert meta.convention == "mindcv"


def test_infer_arch_reads_the_layout():
    torchvision = pytest.importorskip("torchvision")
    for arch in ("resnet34", "resnext50_32x4d", "resnet101"):
        shapes = {name: np.empty(tuple(value.shape), np.float32) if value.dim() else np.float32(0)
                  for name, value in getattr(torchvision.models, arch)().state_dict().items()}
        assert infer_arch(shapes, "x.pth") == arch
    odd = {"conv1.weight": np.empty((64, 3, 7, 7)), "layer1.0.conv1.weight": np.empty((64, 64, 3, 3))}
    with pytest.raises(CheckpointError, match=r"odd\.pth holds a basic-block network with \(1, 0, 0, 0\) blocks"):
        infer_arch(odd, "odd.pth")


def test_convert_cli_reports_user_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing.pth"), str(tmp_path / "out.ckpt")]) == 1
    assert "error: Weights file" in capsys.readouterr().err and not (tmp_path / "out.ckpt").exists()


class RunsCode:
    """Unpickling this calls ``open(marker, "w")``: what a malicious weights file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_pth_that_needs_full_unpickling_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "payload": RunsCode(marker)}, str(path))
    with pytest.raises(CheckpointError, match=r"Refusing .*evil\.pth.*arbitrary code"):
        read_weights(path)
    assert not marker.exists(), "the file's code ran"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_files_give_clear_errors(tmp_path, suffix):
    pytest.importorskip("torch" if suffix == ".pth" else "safetensors")
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=rf"broken\{suffix} cannot be read"):
        read_weights(path)
