"""mindresnet.training.resume: continuing a run at its step, the checks it must pass, the backup of a bad -last.ckpt."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mindresnet.checkpoint import read_checkpoint
from mindresnet.errors import CheckpointError
from mindresnet.fileio import backup_path
from mindresnet.training import stages
from mindresnet.training.features import HeadTrainer
from mindresnet.training.metrics_log import read_metrics
from mindresnet.training.run import fit

from conftest import REPO, fit_config, one_step_config, snapshots, tiny_config


def test_ctrl_c_saves_last_and_resume_continues_at_the_step(tiny_cifar, tmp_path, monkeypatch):
    config = tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=3, max_steps_per_epoch=3)
    real_run_epoch = stages.run_epoch

    def interrupted(train_step, dataset, steps, epoch, cfg, *rest):
        if epoch == 1:  # one step into the second epoch
            real_run_epoch(train_step, dataset, 1, epoch, cfg, *rest)
            raise KeyboardInterrupt
        return real_run_epoch(train_step, dataset, steps, epoch, cfg, *rest)

    monkeypatch.setattr(stages, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    params, meta = read_checkpoint(tmp_path / "ckpt" / "resnet18-last.ckpt")
    assert (meta.epoch, meta.step) == (1, 1)
    assert int(params["global_step"].asnumpy().reshape(-1)[0]) == 4  # 3 steps + 1 of the interrupted epoch

    monkeypatch.setattr(stages, "run_epoch", real_run_epoch)
    config.resume = True
    result = fit(config)
    # The interrupted epoch continues at its second step: 3 epochs x 3 steps, none run twice.
    assert result.global_step == 9
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.epochs_run == 2


def test_resume_without_a_previous_run(tiny_cifar, tmp_path):
    from mindresnet.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="--resume: .*resnet18-last.ckpt does not exist"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", resume=True))


def test_resume_path_continues_that_run_with_the_same_checks(tiny_cifar, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(tiny_cifar, run, epochs=1))
    last = run / "resnet18-last.ckpt"
    # --ckpt-dir left at its default: the run continues in the checkpoint's folder.
    result = fit(tiny_config(tiny_cifar, "ckpt", epochs=2, resume=str(last)))
    assert [r["epoch"] for r in result.history] == [1, 2] and result.epochs_run == 1
    assert result.last_path == last and read_checkpoint(last)[1].epoch == 2
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1, 2]
    with pytest.raises(CheckpointError, match=r"--resume: .*resnet18-last.ckpt was trained with stem='cifar'"):
        fit(tiny_config(tiny_cifar, "ckpt", epochs=3, resume=str(run), stem="imagenet"))


def test_resume_refuses_a_run_of_other_flags(tiny_cifar, tmp_path):
    from mindresnet.errors import CheckpointError

    fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1, max_steps_per_epoch=1))
    with pytest.raises(CheckpointError, match="trained with stem='cifar', this run has stem='imagenet'"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=2, resume=True, stem="imagenet"))
    with pytest.raises(CheckpointError, match="trained with image_size=32, this run has image_size=40"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=2, resume=True, image_size=40))


def test_two_stage_resumes_in_the_head_stage_at_its_step(tiny_cifar, tmp_path, pretrained_file, monkeypatch):
    from mindresnet.training.run import fit
    from mindresnet.errors import CheckpointError

    def run(ckpt, interrupt_at=None, **overrides):
        config = fit_config(tiny_cifar, ckpt, pretrained=str(pretrained_file), freeze_epochs=2, epochs=3,
                            max_steps_per_epoch=1, **overrides)
        real_train_batch = HeadTrainer.train_batch
        calls = []

        def train_batch(trainer, features, labels):
            calls.append(1)
            if len(calls) == interrupt_at:
                raise KeyboardInterrupt
            return real_train_batch(trainer, features, labels)

        monkeypatch.setattr(HeadTrainer, "train_batch", train_batch)
        return fit(config)

    taken = snapshots(monkeypatch)
    run(tmp_path / "straight")
    uninterrupted = taken[1][1]  # after the second head epoch
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "stopped", interrupt_at=13 + 4)  # the 4th step of the second head epoch
    _, meta = read_checkpoint(tmp_path / "stopped" / "resnet18-last.ckpt")
    assert (meta.stage, meta.epoch, meta.step) == ("head", 1, 3)
    with pytest.raises(CheckpointError, match="saved in the head stage at epoch 1.*--freeze-epochs"):
        fit(fit_config(tiny_cifar, tmp_path / "stopped", pretrained=str(pretrained_file), resume=True,
                       epochs=3))
    taken.clear()
    result = run(tmp_path / "stopped", resume=True)
    assert [stage for stage, _ in taken] == ["head", "full"] and [r["epoch"] for r in result.history] == [1, 2, 3]
    for name, value in uninterrupted.items():  # the head epoch continued where it stopped, in the same order
        np.testing.assert_allclose(taken[0][1][name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    assert result.global_step == 1


def test_resume_keeps_the_recorded_split(tiny_cifar, tmp_path):
    fit(one_step_config(tiny_cifar, tmp_path / "ckpt", epochs=1, val_split=0.2))
    with pytest.raises(CheckpointError, match="val_split=0.2, this run has val_split=0.3"):
        fit(one_step_config(tiny_cifar, tmp_path / "ckpt", resume="true", val_split=0.3))
    with pytest.raises(CheckpointError, match="val_seed=1, this run has val_seed=2"):
        fit(one_step_config(tiny_cifar, tmp_path / "ckpt", resume="true", val_split=0.2, seed=2))
    result = fit(one_step_config(tiny_cifar, tmp_path / "ckpt", resume="true", val_split=0.2))
    assert result.epochs_run == 1 and result.test["count"] == 20


def write_small_ckpt(path):
    import mindspore as ms

    staging = path.with_name("staging.ckpt")  # ms.save_checkpoint appends .ckpt to other names
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.arange(3, dtype=np.float32))}], str(staging))
    staging.rename(path)


def test_resume_falls_back_to_the_backup_of_an_unreadable_last_ckpt(tmp_path):
    from mindresnet.training.resume import read_resume_checkpoint

    last = tmp_path / "resnet18-last.ckpt"
    write_small_ckpt(backup_path(last))
    last.write_bytes(b"cut short by a full disk")
    params, _, used = read_resume_checkpoint(last)
    assert used == backup_path(last) and params["w"].asnumpy().tolist() == [0.0, 1.0, 2.0]
    assert not last.exists() and (tmp_path / "resnet18-last.ckpt.unreadable").read_bytes().startswith(b"cut")


@pytest.mark.parametrize("backup_state, expected", [
    (None, "There is no backup (resnet18-last.bak.ckpt) to fall back on: restore"),
    (b"also bad", "Its backup is unreadable too"),
])
def test_resume_says_what_to_do_when_no_valid_file_is_left(tmp_path, backup_state, expected):
    from mindresnet.errors import CheckpointError
    from mindresnet.training.resume import read_resume_checkpoint

    last = tmp_path / "resnet18-last.ckpt"
    last.write_bytes(b"cut short")
    if backup_state is not None:
        backup_path(last).write_bytes(backup_state)
    with pytest.raises(CheckpointError) as caught:
        read_resume_checkpoint(last)
    assert str(last) in str(caught.value) and expected in str(caught.value)
    assert "--ckpt-dir" in str(caught.value) and last.exists()


STEPS = 16  # an epoch of the signal test's runs
RUN_FLAGS = ["--arch", "resnet18", "--stem", "cifar", "--pretrained", "false", "--download", "false",
             "--epochs", "2", "--batch-size", "16", "--max-steps-per-epoch", str(STEPS), "--eval-every", "2",
             "--optimizer", "sgd", "--lr", "0.05", "--seed", "3"]


def train_process(data_dir, ckpt_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "mindresnet.train", *RUN_FLAGS, "--data-dir", str(data_dir),
                             "--ckpt-dir", str(ckpt_dir), *extra], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run(real_slice, tmp_path):
    import mindspore as ms

    from mindresnet.checkpoint import read_checkpoint

    whole = train_process(real_slice, tmp_path / "whole")
    cut = train_process(real_slice, tmp_path / "cut", "--save-every-steps", "4")
    last = tmp_path / "cut" / "resnet18-last.ckpt"
    deadline = time.time() + 600
    while not last.exists() and time.time() < deadline and cut.poll() is None:
        time.sleep(0.2)
    cut.send_signal(signal.SIGTERM)
    started = time.time()
    _, err = cut.communicate(timeout=300)
    assert cut.returncode == 143, err[-2000:]
    assert time.time() - started < 30
    _, meta = read_checkpoint(last)
    assert 0 < meta.epoch * STEPS + meta.step < 2 * STEPS, "the signal did not land mid-run"
    resumed = train_process(real_slice, tmp_path / "cut", "--resume", "true")
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-2000:]
    _, err = whole.communicate(timeout=900)
    assert whole.returncode == 0, err[-2000:]
    a = ms.load_checkpoint(str(tmp_path / "whole" / "resnet18-last.ckpt"))
    b = ms.load_checkpoint(str(last))
    names = [n for n in a if hasattr(a[n], "asnumpy")]
    assert names and set(names) <= set(b)
    for name in names:  # bit-identical on CPU in our runs; a small tolerance for other thread counts
        np.testing.assert_allclose(a[name].asnumpy(), b[name].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    whole_rows = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    cut_rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:5] for r in whole_rows] == [r.split(",")[:5] for r in cut_rows]  # loss, acc, top5, lr
