"""mindresnet.training.run_folder: a run does not overwrite the results of an earlier run in its --ckpt-dir."""
import pytest

from mindresnet.errors import ConfigError
from mindresnet.training.run import fit

from conftest import tiny_config


def test_existing_run_is_not_overwritten(tiny_cifar, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "resnet18-last.ckpt").write_bytes(b"precious")
    with pytest.raises(ConfigError, match="earlier run.s results.*--resume"):
        fit(tiny_config(tiny_cifar, ckpt))
    assert (ckpt / "resnet18-last.ckpt").read_bytes() == b"precious"
