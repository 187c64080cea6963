"""mindresnet.training.callbacks: MindSpore callbacks in fit: both stages' hooks, cb_params, stops, --callback."""
import pytest
from mindspore import nn
from mindspore.train import Callback, LossMonitor

from mindresnet.training.run import fit
from mindresnet.training.callbacks import load_callback
from mindresnet.checkpoint import read_checkpoint
from mindresnet.errors import ConfigError
from mindresnet.training.metrics_log import read_metrics

from conftest import tiny_config


class Recorder(Callback):
    """Records each hook with the cb_params MindSpore's callbacks read; asks to stop at ``stop_at``."""

    def __init__(self, stop_at=None, stop_after_epoch=None):
        super().__init__()
        self.calls, self.stop_at, self.stop_after_epoch = [], stop_at, stop_after_epoch

    def _record(self, hook, run_context):
        p = run_context.original_args()
        self.calls.append(dict(hook=hook, epoch=p.cur_epoch_num, step=p.cur_step_num, batch_num=p.batch_num,
                               epoch_num=p.epoch_num, loss=p.net_outputs, network=p.train_network,
                               optimizer=p.optimizer, metrics=dict(p.metrics)))

    def on_train_begin(self, run_context):
        self._record("begin", run_context)

    def on_train_epoch_begin(self, run_context):
        self._record("epoch_begin", run_context)

    def on_train_step_end(self, run_context):
        self._record("step_end", run_context)
        if (run_context.original_args().cur_epoch_num, run_context.original_args().cur_step_num) == self.stop_at:
            run_context.request_stop()

    def on_train_epoch_end(self, run_context):
        self._record("epoch_end", run_context)
        if run_context.original_args().cur_epoch_num == self.stop_after_epoch:
            run_context.request_stop()

    def on_train_end(self, run_context):
        self._record("end", run_context)


def test_both_stages_call_callbacks_with_the_cb_params_mindspore_reads(tiny_cifar, tmp_path, capsys):
    recorder = Recorder()
    # One head-only epoch (100 cached features in 13 steps of 8), then one full epoch of 2 steps.
    fit(tiny_config(tiny_cifar, tmp_path / "ckpt", freeze_epochs=1), callbacks=[recorder, LossMonitor(1)])
    hooks = [call["hook"] for call in recorder.calls]
    assert hooks == ["begin", "epoch_begin"] + ["step_end"] * 13 + ["epoch_end", "epoch_begin"] + \
        ["step_end"] * 2 + ["epoch_end", "end"]
    steps = [call for call in recorder.calls if call["hook"] == "step_end"]
    assert [(c["epoch"], c["step"], c["batch_num"]) for c in steps] == \
        [(1, step, 13) for step in range(1, 14)] + [(2, 3, 2), (2, 4, 2)]
    assert {c["epoch_num"] for c in recorder.calls} == {2}
    assert isinstance(steps[0]["network"], nn.Cell) and steps[0]["network"] is not steps[-1]["network"]
    assert all(c["optimizer"] is not None for c in steps)
    rows = read_metrics(tmp_path / "ckpt" / "metrics.csv")
    for epoch, row in enumerate(rows, 1):
        losses = [float(c["loss"].asnumpy()) for c in steps if c["epoch"] == epoch]
        assert sum(losses) / len(losses) == pytest.approx(row["loss"], rel=1e-5)
    ends = [call for call in recorder.calls if call["hook"] == "epoch_end"]
    assert [c["metrics"] for c in ends] == [{"accuracy": row["accuracy"], "top5": row["top5"],
                                             "eval_loss": row["eval_loss"]} for row in rows]
    out = capsys.readouterr().out
    assert "epoch: 1 step: 13, loss is" in out and "epoch: 2 step: 2, loss is" in out


def test_a_stop_request_ends_the_run_at_that_step_and_resume_continues_there(tiny_cifar, tmp_path):
    config = tiny_config(tiny_cifar, tmp_path / "ckpt", max_steps_per_epoch=3)
    recorder = Recorder(stop_at=(2, 5))  # the second step of the second epoch
    result = fit(config, callbacks=[recorder])
    assert recorder.calls[-1]["hook"] == "end" and recorder.calls[-2]["step"] == 5
    assert result.global_step == 5 and [row["epoch"] for row in result.history] == [1]
    _, meta = read_checkpoint(tmp_path / "ckpt" / "resnet18-last.ckpt")
    assert (meta.epoch, meta.step) == (1, 2)
    config.resume = True
    assert fit(config).global_step == 6


def test_a_stop_request_at_an_epoch_end_stops_after_that_epoch(tiny_cifar, tmp_path):
    result = fit(tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=3), callbacks=[Recorder(stop_after_epoch=1)])
    assert [row["epoch"] for row in result.history] == [1] and result.global_step == 2


def test_callback_flag_loads_module_class(tiny_cifar, tmp_path, capsys):
    config = tiny_config(tiny_cifar, tmp_path / "ckpt", epochs=1, callback=["mindspore.train:LossMonitor"])
    fit(config)
    assert "epoch: 1 step: 2, loss is" in capsys.readouterr().out


@pytest.mark.parametrize("spec, message", [
    ("LossMonitor", "expected module:Class"),
    ("no_such_module_here:Thing", "cannot import no_such_module_here"),
    ("mindspore.train:NoSuchCallback", "mindspore.train has no NoSuchCallback"),
    ("mindspore.train:RunContext", r"RunContext\(\) needs arguments"),
    ("collections:OrderedDict", "OrderedDict\\(\\) is a OrderedDict, not a mindspore.train.Callback"),
])
def test_bad_callback_specs_name_the_flag(spec, message):
    with pytest.raises(ConfigError, match=f"--callback .*{message}"):
        load_callback(spec)
