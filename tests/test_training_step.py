"""mindresnet.training.step: the train step: mixed precision, EMA, gradient accumulation, clipping."""
import mindspore as ms
import numpy as np
import pytest

from mindresnet.checkpoint import read_checkpoint, save_checkpoint
from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer
from mindresnet.training.step import EMA, build_train_step, evaluation_weights

from conftest import batch, small_resnet, tiny_mlp, values


def mlp_batch(count, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((count, 6)).astype(np.float32), (np.arange(count) % 3).astype(np.int32))


@pytest.mark.parametrize("amp", ["O1", "O2", "O3"])
def test_mixed_precision_levels_build_and_step_on_cpu(amp, tmp_path, monkeypatch):
    from mindresnet.models import create_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MS_OM_PATH", str(tmp_path / "dumps"))
    net = create_model("resnet18", num_classes=10, stem="cifar")
    optimizer = build_optimizer(net.trainable_params(), "momentum", [0.01], 0.9, 0.0, loss_scale=1024.0)
    step = build_train_step(net, build_loss(), optimizer, amp=amp, loss_scale=1024.0)
    x = ms.Tensor(np.random.default_rng(0).random((2, 3, 32, 32), np.float32))
    before = net.fc.weight.asnumpy().copy()
    loss = float(step(x, ms.Tensor(np.array([1, 2], np.int32))).asnumpy())
    assert np.isfinite(loss) and not np.array_equal(net.fc.weight.asnumpy(), before)
    # MindSpore's AMP rewrite (O1) writes its sources under the dumps folder, not the working directory
    assert not (tmp_path / "rewritten_network").exists()
    assert amp != "O1" or list((tmp_path / "dumps" / "rewritten_network").glob("*.py"))


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
