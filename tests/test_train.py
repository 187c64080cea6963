"""Training: a short run, resume after Ctrl-C, NaN guard, atomic checkpoints, CLI errors, end to end."""
import os
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer
from mindresnet.training.step import build_train_step
from mindresnet.training.run import fit
from mindresnet.training import stages
from mindresnet.checkpoint import read_checkpoint, save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.errors import ConfigError
from mindresnet.training.config import TrainConfig
from mindresnet.errors import CheckpointError, TrainingDiverged
from mindresnet.training.metrics_log import read_metrics
from mindresnet.models.pretrained import OPTIMIZER_PREFIXES

REPO = Path(__file__).resolve().parents[1]


def tiny_config(data_dir, ckpt_dir, **overrides) -> TrainConfig:
    values = dict(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(data_dir), download=False,
                  epochs=2, batch_size=8, max_steps_per_epoch=2, lr=0.01, optimizer="sgd", workers=1,
                  ckpt_dir=str(ckpt_dir))
    values.update(overrides)
    return TrainConfig(**values)


def test_two_epoch_run_writes_checkpoints_metrics_and_curves(tiny_cifar, tmp_path):
    result = fit(tiny_config(tiny_cifar, tmp_path / "ckpt"))
    ckpt = tmp_path / "ckpt"
    assert result.global_step == 4 and result.epochs_run == 2
    assert result.best_path == ckpt / "resnet18-best.ckpt"
    for name in ("resnet18-best.ckpt", "resnet18-last.ckpt", "metrics.csv", "training_curves.png", "config.yaml"):
        assert (ckpt / name).stat().st_size > 0, name
    params, meta = read_checkpoint(ckpt / "resnet18-best.ckpt")
    assert meta.arch == "resnet18" and meta.num_classes == 10 and meta.stem == "cifar"
    assert meta.class_names[0] == "airplane" and len(meta.mean) == 3 and meta.image_size == 32
    assert meta.accuracy == pytest.approx(result.best_accuracy)
    assert not any(name.startswith(OPTIMIZER_PREFIXES) for name in params)  # best: weights only
    last_params, last_meta = read_checkpoint(ckpt / "resnet18-last.ckpt")
    assert last_meta.epoch == 2 and {"accum.fc.weight", "stat.fc.weight"} <= set(last_params)
    rows = read_metrics(ckpt / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 and r["images_per_s"] > 0 for r in rows)
    assert rows[0]["lr"] > rows[1]["lr"]  # cosine decays
    assert not list(ckpt.glob(".*tmp*")), "no temporary files may remain"


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


def test_nan_loss_stops_the_run_and_keeps_the_best_checkpoint(tiny_cifar, tmp_path):
    fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1))
    best = tmp_path / "ckpt" / "resnet18-best.ckpt"
    before = best.read_bytes()
    diverging = tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=3, resume=True, lr=1e38, min_lr=1e37,
                            max_steps_per_epoch=6)
    with pytest.raises(TrainingDiverged, match="Lower --lr"):
        fit(diverging)
    assert best.read_bytes() == before


def test_existing_run_is_not_overwritten(tiny_cifar, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "resnet18-last.ckpt").write_bytes(b"precious")
    with pytest.raises(ConfigError, match="earlier run.s results.*--resume"):
        fit(tiny_config(tiny_cifar, ckpt))
    assert (ckpt / "resnet18-last.ckpt").read_bytes() == b"precious"


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


def test_init_from_starts_a_new_run_from_the_weights_alone(tiny_cifar, tmp_path):
    fit(tiny_config(tiny_cifar, tmp_path / "old", epochs=1))
    source = tmp_path / "old" / "resnet18-last.ckpt"  # with optimizer state and epoch, both left behind
    # Its arch and stem replace the flags'; a learning rate of ~0 keeps the weights where they started.
    result = fit(tiny_config(tiny_cifar, tmp_path / "new", epochs=1, arch="resnet50", stem="imagenet",
                                   init_from=str(source), lr=1e-30, min_lr=0.0))
    assert result.global_step == 2 and [r["epoch"] for r in result.history] == [1]
    params, meta = read_checkpoint(tmp_path / "new" / "resnet18-best.ckpt")
    assert (meta.arch, meta.stem, meta.epoch) == ("resnet18", "cifar", 1)
    started, _ = read_checkpoint(source)
    for name in ("conv1.weight", "layer4.1.conv2.weight", "fc.weight"):
        np.testing.assert_allclose(params[name].asnumpy(), started[name].asnumpy(), atol=1e-6, err_msg=name)
    with pytest.raises(CheckpointError, match="--init-from .*plain.ckpt has no mindresnet metadata"):
        ms.save_checkpoint(ms.nn.Dense(2, 2), str(tmp_path / "plain.ckpt"))
        fit(tiny_config(tiny_cifar, tmp_path / "other", init_from=str(tmp_path / "plain.ckpt")))


def test_class_count_must_match_the_dataset(tiny_cifar, tmp_path):
    with pytest.raises(ConfigError, match="--num-classes 7 does not match the 10 classes"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", num_classes=7))


def test_failed_write_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    net = ms.nn.Dense(3, 2)
    path = save_checkpoint(net, tmp_path / "model.ckpt", CheckpointMeta(arch="resnet18", num_classes=2, epoch=1))
    before = path.read_bytes()

    def crash(save_obj, ckpt_file_name, **kwargs):
        Path(ckpt_file_name).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(net, path, CheckpointMeta(arch="resnet18", num_classes=2, epoch=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_lr_schedules():
    from mindresnet.training.schedule import lr_schedule

    cosine = lr_schedule("cosine", 1.0, 0.0, epochs=2, steps_per_epoch=5, warmup_epochs=1)
    assert len(cosine) == 10 and cosine[0] == pytest.approx(1 / 25) and max(cosine) == pytest.approx(1.0)
    assert cosine[5] == pytest.approx(1.0) and cosine[-1] < 0.1
    onecycle = lr_schedule("onecycle", 0.05, 0.0, epochs=10, steps_per_epoch=10)
    assert int(np.argmax(onecycle)) == 30 and onecycle[0] == pytest.approx(0.002)
    step = lr_schedule("step", 1.0, 0.0, epochs=4, steps_per_epoch=1)
    assert step == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert lr_schedule("constant", 0.3, 0.0, epochs=2, steps_per_epoch=3) == pytest.approx([0.3] * 6)


def test_cosine_epoch_is_the_tutorials_cosine_decay_lr():
    from mindresnet.training.schedule import lr_schedule

    tutorial = ms.nn.cosine_decay_lr(min_lr=1e-5, max_lr=1e-3, total_step=5 * 7, step_per_epoch=7, decay_epoch=5)
    assert lr_schedule("cosine_epoch", 1e-3, 1e-5, epochs=5, steps_per_epoch=7) == pytest.approx(tutorial, rel=1e-12)
    assert len(set(tutorial)) == 5, "one rate per epoch"


def test_label_smoothing_changes_the_loss():
    logits = ms.Tensor(np.array([[4.0, 0.0, -2.0], [0.5, 2.0, 0.0]], np.float32))
    labels = ms.Tensor(np.array([0, 1], np.int32))
    plain = float(build_loss(0.0)(logits, labels).asnumpy())
    smooth = float(build_loss(0.2)(logits, labels).asnumpy())
    log_probs = logits.asnumpy() - np.log(np.exp(logits.asnumpy()).sum(axis=1, keepdims=True))
    expected = -(0.8 * log_probs[[0, 1], [0, 1]] + 0.2 / 3 * log_probs.sum(axis=1)).mean()
    assert smooth == pytest.approx(expected, rel=1e-5) and smooth > plain


@pytest.mark.parametrize("amp", ["O1", "O2", "O3"])
def test_mixed_precision_levels_build_and_step_on_cpu(amp):
    from mindresnet.models import create_model

    net = create_model("resnet18", num_classes=10, stem="cifar")
    optimizer = build_optimizer(net.trainable_params(), "momentum", [0.01], 0.9, 0.0, loss_scale=1024.0)
    step = build_train_step(net, build_loss(), optimizer, amp=amp, loss_scale=1024.0)
    x = ms.Tensor(np.random.default_rng(0).random((2, 3, 32, 32), np.float32))
    before = net.fc.weight.asnumpy().copy()
    loss = float(step(x, ms.Tensor(np.array([1, 2], np.int32))).asnumpy())
    assert np.isfinite(loss) and not np.array_equal(net.fc.weight.asnumpy(), before)


def test_eval_every_evaluates_on_schedule(tiny_cifar, tmp_path):
    result = fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=3, eval_every=2, max_steps_per_epoch=1))
    assert ["accuracy" in row for row in result.history] == [False, True, True]  # epoch 2, and the last


def test_resume_refuses_a_run_of_other_flags(tiny_cifar, tmp_path):
    from mindresnet.errors import CheckpointError

    fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1, max_steps_per_epoch=1))
    with pytest.raises(CheckpointError, match="trained with stem='cifar', this run has stem='imagenet'"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=2, resume=True, stem="imagenet"))
    with pytest.raises(CheckpointError, match="trained with image_size=32, this run has image_size=40"):
        fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=2, resume=True, image_size=40))


def test_fit_on_an_image_folder_writes_class_indices(tmp_path):
    import json

    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog", "fox"):
            folder = tmp_path / "pets" / split / name
            folder.mkdir(parents=True)
            for index in range(4):
                Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    config = tiny_config(tmp_path / "pets", tmp_path / "ckpt", dataset="folder", epochs=1, batch_size=4,
                         image_size=32)
    result = fit(config)
    assert json.loads((tmp_path / "ckpt" / "class_indices.json").read_text()) == {"0": "cat", "1": "dog", "2": "fox"}
    _, meta = read_checkpoint(result.best_path)
    assert (meta.dataset, meta.class_names, meta.num_classes) == ("folder", ["cat", "dog", "fox"], 3)


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


class _Linear(ms.nn.Cell):
    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.array([1.0, -2.0], np.float32)), name="w")

    def construct(self, x):
        return (self.w * x).sum()


@pytest.mark.parametrize("name", ["sgd", "momentum"])
def test_optimizer_updates_follow_the_pytorch_formulas(name):
    """sgd is PyTorch's SGD(nesterov=True); momentum is classical momentum (the tutorial's)."""
    net = _Linear()
    rates = [0.1, 0.2, 0.3]
    step = ms.nn.TrainOneStepCell(net, build_optimizer(net.trainable_params(), name, rates, 0.9, 0.01))
    x = np.array([3.0, 4.0])
    w, v = np.array([1.0, -2.0]), np.zeros(2)
    for lr in rates:
        step(ms.Tensor(x.astype(np.float32)))
        grad = x + 0.01 * w  # d(w.x)/dw plus weight decay
        v = 0.9 * v + grad
        w = w - lr * (grad + 0.9 * v if name == "sgd" else v)
        np.testing.assert_allclose(net.w.asnumpy(), w, rtol=1e-5)


def test_divergence_at_the_last_step_of_an_epoch_writes_nothing(tiny_cifar, tmp_path):
    fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1))
    files = {path: path.read_bytes() for path in (tmp_path / "ckpt").iterdir() if path.suffix in (".ckpt", ".csv")}
    # One step: its loss is finite, the update it makes (an LR beyond float32) is not.
    diverging = tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=2, resume=True, lr=1e300, min_lr=1e299,
                            max_steps_per_epoch=1)
    with pytest.raises(TrainingDiverged, match="parameters became NaN or infinite after epoch 2.*Lower --lr"):
        fit(diverging)
    assert {path: path.read_bytes() for path in files} == files
