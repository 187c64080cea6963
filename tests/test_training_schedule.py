"""mindresnet.training.schedule: the LR schedules and the plateau monitor."""
import mindspore as ms
import numpy as np
import pytest

from mindresnet.training.optim import build_optimizer, scale_learning_rates
from mindresnet.training.schedule import PlateauMonitor

from conftest import tiny_mlp


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
