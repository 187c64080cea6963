"""mindresnet.train: the training command (python -m mindresnet.train, scripts/run_train.sh), end to end."""
import os
import subprocess
import sys

import mindspore as ms
import pytest

from mindresnet import hub
from mindresnet.training.metrics_log import read_metrics

from conftest import REPO


@pytest.mark.parametrize("download_flags", [["--pretrained", "true"], ["--pretrained", "false", "--download", "true"]])
def test_offline_train_ends_with_the_message_and_exit_code_1(tmp_path, tiny_cifar, closed_port_url, monkeypatch,
                                                             capsys, download_flags):
    from mindresnet.train import main

    monkeypatch.setenv(hub.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(hub.MIRROR_ENV, closed_port_url)
    data_dir = tiny_cifar if download_flags[1] == "true" else tmp_path / "no-cifar-here"
    code = main(["--arch", "resnet18", "--stem", "cifar", "--data-dir", str(data_dir), "--epochs", "1",
                 "--batch-size", "8", "--ckpt-dir", str(tmp_path / "run"), *download_flags])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: Could not download https://" in err and f"(from the mirror: {closed_port_url}" in err
    assert str(tmp_path / "home") in err and "MINDRESNET_MIRROR=<base url>" in err
    assert "Traceback" not in err


def run_cli(*args, timeout=600):
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(REPO / "scripts" / "run_train.sh"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_rejects_unknown_and_unavailable_devices(tmp_path):
    result = run_cli("--device", "TPU", "--ckpt-dir", str(tmp_path))
    assert result.returncode == 1 and "--device 'TPU' is not one of Ascend, GPU, CPU" in result.stderr
    if not ms.hal.is_available("GPU"):
        result = run_cli("--device", "GPU", "--ckpt-dir", str(tmp_path))
        assert result.returncode == 1 and "error: --device GPU" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_run_train_sh_end_to_end_on_the_real_subset(real_subset, tmp_path):
    ckpt = tmp_path / "ckpt"
    result = run_cli("--device", "CPU", "--arch", "resnet18", "--stem", "cifar", "--pretrained", "false",
                     "--data-dir", str(real_subset), "--download", "false", "--epochs", "1",
                     "--batch-size", "32", "--max-steps-per-epoch", "20", "--lr", "0.05",
                     "--optimizer", "sgd", "--ckpt-dir", str(ckpt))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best test accuracy" in result.stdout  # CIFAR-10 selects on its test split by default
    for name in ("resnet18-best.ckpt", "resnet18-last.ckpt", "metrics.csv", "training_curves.png", "config.yaml"):
        assert (ckpt / name).is_file(), name
    assert "numpy reader" in result.stderr  # the subset's short files take our reader
    accuracy = read_metrics(ckpt / "metrics.csv")[0]["accuracy"]
    assert accuracy > 0.12, "20 steps on real images must beat chance (0.10)"
