"""Fine-tuning pieces: frozen BatchNorm, layer-wise LR, AdamW, EMA, accumulation, clipping, mixing,
plateau/early stop, top-k checkpoints, linear probe, flip TTA."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import dataset as ds
from mindspore import nn

from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer, current_lr, parameter_groups, scale_learning_rates
from mindresnet.training.run import TopKCheckpoints
from mindresnet.training.schedule import PlateauMonitor
from mindresnet.training.step import build_train_step
from mindresnet.training.features import HeadTrainer, PooledFeatures, extract_features
from mindresnet.training.optim import lr_scale
from mindresnet.training.step import EMA, evaluation_weights
from mindresnet.checkpoint import read_checkpoint, save_checkpoint
from mindresnet.data.transforms import auto_augment_ops, mix_batches
from mindresnet.report import evaluate_model
from mindresnet.models import create_model


def small_resnet(num_classes=3, **kwargs):
    return create_model("resnet18", num_classes=num_classes, stem="cifar", **kwargs)


def batch(count=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (ms.Tensor(rng.standard_normal((count, 3, 32, 32)).astype(np.float32)),
            ms.Tensor((np.arange(count) % classes).astype(np.int32)))


def values(cell, names=None):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters() if names is None or p.name in names}


def tiny_mlp(seed=0):
    ms.set_seed(seed)
    return nn.SequentialCell([nn.Dense(6, 8), nn.ReLU(), nn.Dense(8, 3)])


def mlp_batch(count, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((count, 6)).astype(np.float32), (np.arange(count) % 3).astype(np.int32))


def test_frozen_backbone_keeps_the_pretrained_batchnorm_statistics(tmp_path):
    source = small_resnet()
    rng = np.random.default_rng(0)
    for param in source.get_parameters():  # non-trivial statistics, as a real pretrained file has
        if "moving_" in param.name:
            low = 0.8 if "variance" in param.name else -0.1
            param.set_data(ms.Tensor(rng.uniform(low, low + 0.4, param.shape).astype(np.float32)))
    pretrained = save_checkpoint(source, tmp_path / "pretrained.ckpt")
    file_values = {name: p.asnumpy().copy() for name, p in read_checkpoint(pretrained)[0].items()}

    def train_three_steps(freeze, **build):
        net = small_resnet(pretrained=str(pretrained), **build)
        freeze(net)
        optimizer = build_optimizer(net.trainable_params(), "momentum", [0.1] * 3, 0.9, 0.0)
        step = build_train_step(net, build_loss(), optimizer)
        for seed in range(3):
            step(*batch(seed=seed))
        return values(net)

    backbone = [name for name in file_values if not name.startswith("fc.")]
    assert any("moving_mean" in name for name in backbone)
    # The one freeze: called on the network (train, the head stage) or asked of create_model.
    for frozen in (train_three_steps(lambda net: net.freeze_backbone()),
                   train_three_steps(lambda net: None, freeze_backbone=True)):
        for name in backbone:
            np.testing.assert_array_equal(frozen[name], file_values[name], err_msg=name)
        assert not np.allclose(frozen["fc.weight"], file_values["fc.weight"])
    # Freezing only the weights (the old --freeze-backbone) lets the statistics drift.
    weights_only = train_three_steps(lambda net: [setattr(p, "requires_grad", p.name.startswith("fc."))
                                                  for p in net.get_parameters()])
    assert not np.allclose(weights_only["norm.moving_mean"], file_values["norm.moving_mean"])


def test_layer_decay_and_head_scale_give_each_stage_its_rate():
    net = small_resnet()
    rates = [0.1, 0.05]
    optimizer = build_optimizer(net.trainable_params(), "sgd", rates, 0.9, 1e-4,
                                       lr_scale=lambda name: lr_scale(name, 0.5, 10.0))
    params = {p.name: p for p in net.trainable_params()}
    expected = {"fc.weight": 10.0, "fc.bias": 10.0, "layer4.1.conv2.weight": 0.5, "layer3.0.norm1.gamma": 0.25,
                "layer2.0.down_sample.0.weight": 0.125, "layer1.1.conv1.weight": 0.0625, "conv1.weight": 0.03125,
                "norm.beta": 0.03125}
    for name, scale in expected.items():
        table = optimizer.get_lr_parameter(params[name]).asnumpy()
        np.testing.assert_allclose(table, np.array(rates) * scale, rtol=1e-6, err_msg=name)
    decay = {p.name: group["weight_decay"] for group in parameter_groups(net.trainable_params(), rates, 1e-4)
             for p in group["params"]}
    assert decay["conv1.weight"] == 1e-4 and decay["fc.bias"] == decay["norm.gamma"] == 0.0
    assert current_lr(optimizer, params["conv1.weight"]) == pytest.approx(0.1 * 0.03125)


def test_adamw_decay_is_decoupled_and_skips_batchnorm_and_biases():
    net = nn.SequentialCell([nn.Dense(4, 4), nn.BatchNorm1d(4)])
    before = values(net)
    optimizer = build_optimizer(net.trainable_params(), "adamw", [0.1], 0.9, 0.5)

    class ZeroLoss(nn.Cell):  # zero gradients: only the decoupled decay can move a weight
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.net = net

        def construct(self, x):
            return (self.net(x) * 0.0).sum()

    nn.TrainOneStepCell(ZeroLoss(), optimizer)(ms.Tensor(np.ones((2, 4), np.float32)))
    after = values(net)
    np.testing.assert_allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5), rtol=1e-5)
    for name in ("0.bias", "1.gamma", "1.beta"):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_ema_weights_differ_from_raw_and_are_what_evaluation_and_the_best_checkpoint_see(tmp_path):
    net = small_resnet()
    ema = EMA(net, decay=0.9)
    optimizer = build_optimizer(net.trainable_params(), "sgd", [0.05] * 4, 0.9, 0.0)
    step = build_train_step(net, build_loss(), optimizer, ema=ema)
    for seed in range(4):
        step(*batch(seed=seed))
    raw = values(net)
    averages = {p.name[len("ema."):]: p.asnumpy() for p in ema.averages}
    assert float(ema.updates.asnumpy()[0]) == 4
    assert not np.allclose(raw["conv1.weight"], averages["conv1.weight"])
    with evaluation_weights(ema):
        np.testing.assert_array_equal(net.conv1.weight.asnumpy(), averages["conv1.weight"])
        save_checkpoint(net, tmp_path / "best.ckpt")
    np.testing.assert_array_equal(net.conv1.weight.asnumpy(), raw["conv1.weight"])  # raw weights are back
    saved, _ = read_checkpoint(tmp_path / "best.ckpt")
    np.testing.assert_array_equal(saved["conv1.weight"].asnumpy(), averages["conv1.weight"])
    assert "ema.conv1.weight" in {p.name for p in step.get_parameters()}  # the last checkpoint keeps them


def test_ema_leaves_the_loss_scaled_update_untouched():
    """mindcv#604: with EMA, a loss-scaled step must update the raw weights exactly as without it."""
    x, y = mlp_batch(8)
    results = []
    for with_ema in (False, True):
        net = tiny_mlp()
        optimizer = build_optimizer(net.trainable_params(), "momentum", [0.1] * 2, 0.9, 0.0,
                                           loss_scale=1024.0)
        step = build_train_step(net, build_loss(), optimizer, amp="O2", loss_scale=1024.0,
                                       ema=EMA(net, 0.5) if with_ema else None)
        for _ in range(2):
            step(ms.Tensor(x), ms.Tensor(y))
        results.append(values(net))
    for name, value in results[0].items():
        np.testing.assert_allclose(results[1][name], value, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("optimizer_name", ["momentum", "adamw"])
def test_accumulating_n_steps_equals_one_step_of_n_times_the_batch(optimizer_name):
    x, y = mlp_batch(8)
    nets = []
    for accumulate, micro in ((1, 8), (4, 2)):
        net = tiny_mlp()
        optimizer = build_optimizer(net.trainable_params(), optimizer_name, [0.1] * 2, 0.9, 0.01)
        step = build_train_step(net, build_loss(), optimizer, grad_accum=accumulate,
                                       clip_grad=None if accumulate == 1 else 1e9)
        for _ in range(2):  # two updates
            for first in range(0, 8, micro):
                step(ms.Tensor(x[first:first + micro]), ms.Tensor(y[first:first + micro]))
        assert int(optimizer.global_step.asnumpy()[0]) == 2
        nets.append(values(net))
    start = values(tiny_mlp())
    for name, value in nets[0].items():
        assert not np.allclose(value, start[name])
        np.testing.assert_allclose(nets[1][name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_clipping_bounds_the_update_to_the_norm():
    x, y = mlp_batch(8)
    moves = {}
    for clip in (None, 0.01):
        net = tiny_mlp()
        before = values(net)
        optimizer = build_optimizer(net.trainable_params(), "momentum", [1.0], 0.0, 0.0)
        step = build_train_step(net, build_loss(), optimizer, clip_grad=clip)
        step(ms.Tensor(x * 50), ms.Tensor(y))
        moves[clip] = np.sqrt(sum(((v - before[k]) ** 2).sum() for k, v in values(net).items()))
    assert moves[None] > 0.1
    assert moves[0.01] == pytest.approx(0.01, rel=1e-3)


def test_mixup_and_cutmix_turn_labels_into_soft_targets():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    labels = (np.arange(16) % 4).astype(np.int32)
    for mixup, cutmix in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        pipeline = ds.NumpySlicesDataset((images, labels), ["image", "label"], shuffle=False).batch(8)
        mixed = list(mix_batches(pipeline, 4, mixup, cutmix).create_tuple_iterator(output_numpy=True))
        soft = np.concatenate([label for _, label in mixed])
        assert soft.shape == (16, 4) and soft.dtype == np.float32
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
        assert ((soft > 0) & (soft < 1)).any(), (mixup, cutmix)  # some targets are mixtures
        assert not np.array_equal(np.concatenate([image for image, _ in mixed]), images)
    plain = ds.NumpySlicesDataset((images, labels), ["image", "label"], shuffle=False).batch(8)
    assert mix_batches(plain, 4) is plain


def test_auto_augment_changes_images():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for name in ("randaugment", "autoaugment"):
        (op,) = auto_augment_ops(name)
        outputs = [op(image) for _ in range(5)]
        assert all(out.shape == image.shape and out.dtype == np.uint8 for out in outputs)
        assert any(not np.array_equal(out, image) for out in outputs), name
    assert auto_augment_ops(None) == []
    with pytest.raises(ValueError, match="auto-augment"):
        auto_augment_ops("trivial")


def test_plateau_monitor_follows_reduce_lr_on_plateau_and_scales_every_group():
    monitor = PlateauMonitor(patience=2)
    assert [monitor.step(a) for a in (0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7)] == \
        [False, False, False, True, False, False, True]
    assert PlateauMonitor(2).replay([0.5, float("nan"), 0.4, 0.4]) == 1
    net = tiny_mlp()
    optimizer = build_optimizer(net.trainable_params(), "sgd", [0.1, 0.1], 0.9, 1e-4,
                                       lr_scale=lambda name: 2.0 if name.startswith("2.") else 1.0)
    scale_learning_rates(optimizer, 0.1, min_lr=0.015)
    params = {p.name: p for p in net.trainable_params()}
    np.testing.assert_allclose(optimizer.get_lr_parameter(params["0.weight"]).asnumpy(), [0.015, 0.015])
    np.testing.assert_allclose(optimizer.get_lr_parameter(params["2.weight"]).asnumpy(), [0.02, 0.02], rtol=1e-6)
    early = PlateauMonitor(patience=1)
    assert [early.step(a) for a in (0.3, 0.2)] == [False, True]


def test_top_k_keeps_the_best_ranked(tmp_path):
    keeper = TopKCheckpoints(tmp_path, "resnet18", 2)
    net = tiny_mlp()

    ranks = [keeper.offer(accuracy, lambda path: save_checkpoint(net, path)) for accuracy in (0.3, 0.5, 0.4, 0.2, 0.6)]
    assert ranks == [1, 1, 2, None, 1]
    assert keeper.scores() == [0.6, 0.5]
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["resnet18-top1.ckpt", "resnet18-top2.ckpt"]
    assert read_checkpoint(tmp_path / "resnet18-top2.ckpt")[0]["0.weight"] is not None
    assert TopKCheckpoints(tmp_path, "resnet18", 2).scores() == [0.6, 0.5]  # a resumed run's view


def test_linear_probe_trains_the_head_on_cached_features_and_saves_a_full_model(tmp_path):
    net = small_resnet(num_classes=2)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((24, 3, 32, 32)).astype(np.float32)
    labels = (np.arange(24) % 2).astype(np.int32)
    images[labels == 1] += 0.5  # separable classes
    pipeline = ds.NumpySlicesDataset((images, labels), ["image", "label"], shuffle=False).batch(8)
    backbone = {k: v for k, v in values(net).items() if not k.startswith("fc.")}
    features, feature_labels = extract_features(net, pipeline)
    assert features.shape == (24, 512) and list(feature_labels) == list(labels)
    net.set_train(False)
    np.testing.assert_allclose(features[:8], PooledFeatures(net)(ms.Tensor(images[:8])).asnumpy(),
                               rtol=1e-4, atol=1e-5)
    optimizer = build_optimizer(net.fc.trainable_params(), "sgd", [0.05] * 60, 0.9, 0.0)
    trainer = HeadTrainer(net, optimizer, build_loss(), batch_size=8)
    first, _ = trainer.run_epoch(features, feature_labels)
    for _ in range(19):
        last, _ = trainer.run_epoch(features, feature_labels)
    assert last < first * 0.5
    assert trainer.evaluate(features, feature_labels)["accuracy"] == 1.0
    for name, value in backbone.items():  # the backbone, BatchNorm statistics included, is untouched
        np.testing.assert_array_equal(values(net)[name], value, err_msg=name)
    save_checkpoint(net, tmp_path / "probe.ckpt")
    reloaded = small_resnet(num_classes=2, pretrained=str(tmp_path / "probe.ckpt"))
    reloaded.set_train(False)
    logits = reloaded(ms.Tensor(images)).asnumpy()
    assert (logits.argmax(1) == labels).mean() == 1.0


def test_flip_tta_averages_the_image_and_its_mirror():
    net = small_resnet()
    images, labels = batch(4)
    pipeline = ds.NumpySlicesDataset((images.asnumpy(), labels.asnumpy()), ["image", "label"], shuffle=False).batch(4)
    plain = evaluate_model(net, pipeline, ["a", "b", "c"])
    flipped = evaluate_model(net, pipeline, ["a", "b", "c"], tta="flip")
    net.set_train(False)
    expected = (net(images).asnumpy() + net(ms.Tensor(images.asnumpy()[..., ::-1].copy())).asnumpy()) / 2
    probs = np.exp(expected - expected.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    loss = -np.log(probs[np.arange(4), labels.asnumpy()]).mean()
    assert flipped.loss == pytest.approx(loss, rel=1e-4)
    assert flipped.loss != pytest.approx(plain.loss, rel=1e-4)


# --- through fit: linear probe, two-stage, auto-augment, top-k and early stop, lr_stem ---------------------------


def fit_config(data_dir, ckpt_dir, **overrides):
    from mindresnet.training.config import TrainConfig

    values = dict(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(data_dir), download=False,
                  epochs=2, batch_size=8, max_steps_per_epoch=2, lr=0.01, optimizer="sgd", workers=1,
                  lr_schedule="constant", ckpt_dir=str(ckpt_dir))
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture
def pretrained_file(tmp_path):
    """A resnet18 (cifar stem, 10 classes) .ckpt with non-trivial BatchNorm statistics, as a real pretrained file has."""
    net = small_resnet(num_classes=10)
    rng = np.random.default_rng(0)
    for param in net.get_parameters():
        if "moving_" in param.name:
            low = 0.8 if "variance" in param.name else -0.1
            param.set_data(ms.Tensor(rng.uniform(low, low + 0.4, param.shape).astype(np.float32)))
    return save_checkpoint(net, tmp_path / "pretrained.ckpt")


def file_values(path):
    return {name: p.asnumpy().copy() for name, p in read_checkpoint(path)[0].items()}


def snapshots(monkeypatch):
    """Record (stage, every network value) at the end of each epoch of fit."""
    from mindresnet.training.run import RunRecord

    taken = []
    real_end_epoch = RunRecord.end_epoch

    def end_epoch(record, stage, epoch, row):
        taken.append((stage.name, values(record.net)))
        real_end_epoch(record, stage, epoch, row)

    monkeypatch.setattr(RunRecord, "end_epoch", end_epoch)
    return taken


def test_linear_probe_through_fit_writes_a_full_model_checkpoint_with_the_pretrained_backbone(
        tiny_cifar, tmp_path, pretrained_file):
    from mindresnet.training.metrics_log import read_metrics
    from mindresnet.training.run import fit
    from mindresnet.tools.eval_data import load_trained_model

    result = fit(fit_config(tiny_cifar, tmp_path / "ckpt", pretrained=str(pretrained_file), linear_probe=True,
                            epochs=3, lr=0.05))
    assert result.best_path is not None and len(result.history) == 3
    assert result.global_step == 3 * 13  # every epoch: all 100 training features in batches of 8
    net, meta = load_trained_model(result.best_path)
    assert meta.stage == "head" and meta.num_classes == 10
    pretrained = file_values(pretrained_file)
    trained = values(net)
    for name, value in pretrained.items():
        if not name.startswith("fc."):  # weights and BatchNorm statistics exactly the pretrained file's
            np.testing.assert_array_equal(trained[name], value, err_msg=name)
    assert not np.allclose(trained["fc.weight"], pretrained["fc.weight"])
    rows = read_metrics(tmp_path / "ckpt" / "metrics.csv")
    assert [row["lr"] for row in rows] == pytest.approx([0.05] * 3)
    assert all(np.isnan(row["lr_stem"]) for row in rows)  # the stem does not train
    _, last_meta = read_checkpoint(result.last_path)
    assert (last_meta.stage, last_meta.epoch) == ("head", 3)


def test_two_stage_trains_the_head_on_a_frozen_backbone_then_everything(
        tiny_cifar, tmp_path, pretrained_file, monkeypatch):
    from mindresnet.training.metrics_log import read_metrics
    from mindresnet.training.run import fit

    taken = snapshots(monkeypatch)
    result = fit(fit_config(tiny_cifar, tmp_path / "ckpt", pretrained=str(pretrained_file), freeze_epochs=1,
                            epochs=2, lr=0.01, head_lr=0.03))
    pretrained = file_values(pretrained_file)
    (head_stage, after_head), (full_stage, after_full) = taken
    assert (head_stage, full_stage) == ("head", "full")
    backbone = [name for name in pretrained if not name.startswith("fc.")]
    for name in backbone:  # the head epochs leave weights and BatchNorm statistics as the file has them
        np.testing.assert_array_equal(after_head[name], pretrained[name], err_msg=name)
    assert not np.allclose(after_head["fc.weight"], pretrained["fc.weight"])
    for name in ("conv1.weight", "layer1.0.conv1.weight", "norm.moving_mean", "layer4.1.norm2.moving_variance"):
        assert not np.allclose(after_full[name], after_head[name]), name  # then everything trains
    assert result.global_step == 2  # the full stage's updates: 1 epoch x 2 steps
    _, last_meta = read_checkpoint(result.last_path)
    assert (last_meta.stage, last_meta.epoch) == ("full", 2)
    header = (tmp_path / "ckpt" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "lr_stem" in header
    rows = read_metrics(tmp_path / "ckpt" / "metrics.csv")
    assert rows[0]["lr"] == pytest.approx(0.03) and np.isnan(rows[0]["lr_stem"])  # head stage: --head-lr
    assert rows[1]["lr"] == pytest.approx(0.01) and rows[1]["lr_stem"] == pytest.approx(0.01)  # full stage: --lr


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


def test_auto_augment_changes_the_training_images(tiny_cifar):
    from conftest import collect
    from mindresnet.training.config import TrainConfig
    from mindresnet.distributed import DistInfo
    from mindresnet.errors import ConfigError
    from mindresnet.data.factory import get_dataset_kind
    from mindresnet.training.run import build_datasets

    def first_images(auto_augment):
        config = fit_config(tiny_cifar, "unused", auto_augment=auto_augment)
        ds.config.set_seed(5)
        data = build_datasets(config, DistInfo(), get_dataset_kind(config.dataset).preprocess(config.image_size), 0.0)
        return collect(data.train.pipeline)[0]

    plain = first_images(None)
    np.testing.assert_array_equal(first_images(None), plain)  # same seed, same crops and flips
    for name in ("randaugment", "autoaugment"):
        assert not np.array_equal(first_images(name), plain), name
    with pytest.raises(ConfigError, match="--auto-augment must be one of"):
        TrainConfig(auto_augment="trivial").validate()


def test_keep_best_and_early_stop_through_fit(tiny_cifar, tmp_path):
    import json

    from mindresnet.training.run import fit

    # A frozen backbone and a vanishing LR: the test accuracy cannot improve after the first epoch.
    result = fit(fit_config(tiny_cifar, tmp_path / "ckpt", epochs=5, max_steps_per_epoch=1, freeze_backbone=True,
                            lr=1e-9, min_lr=0.0, early_stop=2, keep_best=2))
    assert result.epochs_run == 3 and len(result.history) == 3  # stopped after 2 evaluations without progress
    ckpt = tmp_path / "ckpt"
    ranking = json.loads((ckpt / "resnet18-top.json").read_text())
    assert len(ranking) == 2 and ranking == sorted(ranking, reverse=True)
    for rank, score in enumerate(ranking, 1):
        assert read_checkpoint(ckpt / f"resnet18-top{rank}.ckpt")[1].accuracy == pytest.approx(score)
    assert not (ckpt / "resnet18-top3.ckpt").exists()


def test_stage_options_are_checked():
    from mindresnet.training.config import TrainConfig
    from mindresnet.errors import ConfigError

    for flags, message in ((dict(linear_probe=True, mixup=0.2), "--linear-probe .*--mixup"),
                           (dict(linear_probe=True, ema=0.99), "--linear-probe .*--ema"),
                           (dict(linear_probe=True, freeze_epochs=1), "--linear-probe .*--freeze-epochs"),
                           (dict(freeze_epochs=5), "--freeze-epochs \\(5\\) must be .* smaller than --epochs"),
                           (dict(freeze_epochs=1, freeze_backbone=True), "--freeze-backbone never does"),
                           (dict(freeze_epochs=3, warmup_epochs=2), "--warmup-epochs .*after --freeze-epochs")):
        with pytest.raises(ConfigError, match=message):
            TrainConfig(epochs=5, **flags).validate()
    assert TrainConfig(epochs=5, freeze_epochs=2, lr=0.01).head_stage_lr() == (0.05, "--head-lr (unset: 5 x --lr)")
    assert TrainConfig(linear_probe=True, lr=0.02).head_stage_lr() == (0.02, "--lr")
