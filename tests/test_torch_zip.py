"""The torch-free reader of PyTorch zip files: the same tensors as torch.load(weights_only=True), nothing else."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mindresnet.errors import CheckpointError
from mindresnet.models.torch_zip import read_torch_file
from mindresnet.models.weight_files import read_weights

REPO = Path(__file__).resolve().parents[1]


def assert_same_as_torch(path: Path, loaded) -> None:
    torch = pytest.importorskip("torch")
    expected = torch.load(str(path), map_location="cpu", weights_only=True)
    assert list(loaded) == list(expected)
    for name, tensor in expected.items():
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        assert loaded[name].dtype == tensor.numpy().dtype, name
        np.testing.assert_array_equal(loaded[name], tensor.numpy(), err_msg=name)


@pytest.mark.parametrize("arch", ["resnet18", "resnext50_32x4d"])
def test_torchvision_state_dict_equals_torch_load(tmp_path, arch):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path / f"{arch}.pth"
    torch.save(getattr(torchvision.models, arch)().state_dict(), str(path))
    loaded = read_torch_file(path)
    assert loaded["bn1.num_batches_tracked"].dtype == np.int64
    assert_same_as_torch(path, loaded)


def test_timm_state_dict_equals_torch_load(tmp_path):
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    path = tmp_path / "timm-resnet18.pt"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), str(path))
    assert_same_as_torch(path, read_torch_file(path))


def test_views_dtypes_and_shared_storages_equal_torch_load(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8) / 7
    state = {
        "transposed": base.t(), "offset_slice": base[2:, 3:6], "strided": base[::2, ::3], "scalar": base[1, 1],
        "empty": base[:0], "double": base.double(), "half": base.half(), "bfloat16": base.bfloat16(),
        "int64": torch.arange(5), "int32": torch.arange(5, dtype=torch.int32), "bool": base > 3,
        "uint8": torch.arange(7, dtype=torch.uint8), "int8": -torch.arange(7, dtype=torch.int8),
    }
    path = tmp_path / "views.pth"
    torch.save(state, str(path))
    with zipfile.ZipFile(path) as archive:
        assert sum("/data/" in name for name in archive.namelist()) < len(state), "views must share a storage"
    assert_same_as_torch(path, read_torch_file(path))


def test_read_weights_gives_float32_of_the_floating_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "mixed.pth"
    torch.save({"model": {"w": torch.ones(2, 3, dtype=torch.float16), "steps": torch.tensor(4)}}, str(path))
    params, meta = read_weights(path)
    assert meta is None and list(params) == ["w"]
    np.testing.assert_array_equal(params["w"].asnumpy(), np.ones((2, 3), np.float32))
    assert params["w"].asnumpy().dtype == np.float32


class RunsCode:
    """Unpickling this calls ``os.system``: what a malicious weights file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_pth(path: Path, payload) -> Path:
    """A zip laid out as torch.save writes it, whose data.pkl pickles ``payload``."""
    import pickle

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"conv1.weight": payload}, protocol=2))
        archive.writestr("archive/byteorder", "little")
    return path


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    path = crafted_pth(tmp_path / "evil.pth", RunsCode(marker))
    with pytest.raises(CheckpointError, match=r"Refusing .*evil\.pth: its pickle asks for (posix|os)\.system.*"
                                              "arbitrary code"):
        read_weights(path)
    assert not marker.exists(), "the file's code ran"


def test_a_torch_saved_object_is_refused_and_never_runs(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(2), "payload": RunsCode(marker)}, str(path))
    with pytest.raises(CheckpointError, match=r"Refusing .*evil\.pth"):
        read_torch_file(path)
    assert not marker.exists(), "the file's code ran"


def test_legacy_format_is_refused_with_the_fix(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "old.pth"
    torch.save({"w": torch.zeros(2)}, str(path), _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old\.pth is in PyTorch's legacy .*\.safetensors"):
        read_torch_file(path)


@pytest.mark.parametrize("content", [b"\x00" * 100, b"PK\x03\x04 cut short"])
def test_foreign_or_truncated_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"broken\.pth cannot be read as a PyTorch weights file"):
        read_torch_file(path)


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(4)}, str(path))
    with zipfile.ZipFile(path) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    storage = next(name for name in records if "/data/" in name)
    records[storage] = records[storage][:8]  # 2 of the 4 floats
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    with pytest.raises(CheckpointError, match=r"w\.pth cannot be read"):
        read_torch_file(path)


HIDDEN_TORCH = """
import sys
sys.modules["torch"] = None
import numpy as np
from mindresnet.models.weight_files import read_weights
params, _ = read_weights(sys.argv[1])
np.savez(sys.argv[2], **{name: value.asnumpy() for name, value in params.items()})
try:
    import torch
except ImportError:
    print("torch hidden")
"""


def test_reads_without_torch_importable(tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), str(path))
    out = tmp_path / "arrays.npz"
    done = subprocess.run([sys.executable, "-c", HIDDEN_TORCH, str(path), str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("torch hidden")
    arrays = np.load(out)
    floating = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
    assert sorted(arrays.files) == sorted(floating)
    for name, tensor in floating.items():
        np.testing.assert_array_equal(arrays[name], tensor.numpy(), err_msg=name)
