"""MindSpore callbacks in mindresnet's training loop (``fit(config, callbacks=[...])``, ``--callback``).

:class:`CallbackRunner` calls each ``mindspore.train.Callback`` where ``Model.train`` would:
``on_train_begin``, ``on_train_epoch_begin``, ``on_train_step_end``, ``on_train_epoch_end`` and
``on_train_end``, inside the callback's own context (``__enter__``/``__exit__``). One
``RunContext`` serves the whole run; its ``cb_params`` hold what MindSpore's callbacks read
(``cur_epoch_num``, ``cur_step_num``, ``batch_num``, ``epoch_num``, ``net_outputs``,
``train_network``, ``optimizer``, ``train_dataset``, ``mode``, ``dataset_sink_mode``, ...) and,
after an evaluation, ``metrics`` and ``eval_results`` (``accuracy``, ``top5``, ``eval_loss``). ``cur_step_num`` counts
steps as ``epoch * batch_num + step``, with the ``batch_num`` of the stage that trains the epoch.

A callback that calls ``run_context.request_stop()`` in ``on_train_step_end`` ends the run after
that step (:class:`StopRequested`; ``fit`` saves ``<arch>-last.ckpt`` there), or in
``on_train_epoch_end`` after that epoch.
"""
from __future__ import annotations

import contextlib
import importlib
from typing import Dict, Iterator, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore.train import Callback, RunContext

from mindresnet.errors import ConfigError


class CallbackParams(dict):
    """``cb_params``: a dict whose keys are also attributes, as in ``Model.train``."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value) -> None:
        self[name] = value


class StopRequested(Exception):
    """A callback asked the run to stop at this step (``run_context.request_stop()``)."""


def load_callback(spec: str) -> Callback:
    """The callback ``module:Class`` of ``--callback``, built without arguments.

    Raises:
        ConfigError: a malformed spec, a module that does not import, a missing name, a class that
            needs arguments, or an object that is not a ``mindspore.train.Callback``.
    """
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ConfigError(f"--callback {spec!r}: expected module:Class, e.g. mindspore.train:LossMonitor.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--callback {spec}: cannot import {module_name} ({exc}). Put its folder on "
                          "PYTHONPATH, or run from that folder with python -m mindresnet.train.") from None
    factory = getattr(module, name, None)
    if factory is None:
        raise ConfigError(f"--callback {spec}: {module_name} has no {name}.")
    try:
        callback = factory()
    except TypeError as exc:
        raise ConfigError(f"--callback {spec}: {name}() needs arguments ({exc}). Give them defaults, or pass "
                          "an instance to mindresnet.training.fit(config, callbacks=[...]).") from None
    if not isinstance(callback, Callback):
        raise ConfigError(f"--callback {spec}: {name}() is a {type(callback).__name__}, not a "
                          "mindspore.train.Callback.")
    return callback


class CallbackRunner:
    """Calls ``callbacks`` at the hooks of a training run (see the module docstring).

    Args:
        callbacks: ``mindspore.train.Callback`` objects, called in this order.
        net: the network being trained (``cb_params.network``).
        epochs: epochs of the whole run (``cb_params.epoch_num``).
        shards: data-parallel ranks (``cb_params.device_number``).
    """

    def __init__(self, callbacks: Sequence[Callback], net, epochs: int, shards: int = 1):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"fit(callbacks=...): {callback!r} is not a mindspore.train.Callback")
        self.params = CallbackParams(
            mode="train", dataset_sink_mode=False, epoch_num=int(epochs), cur_epoch_num=0, cur_step_num=0,
            batch_num=0, net_outputs=None, network=net, train_network=None, optimizer=None, loss_fn=None,
            train_dataset=None, train_dataset_element=None, parallel_mode=ms.get_auto_parallel_context("parallel_mode"),
            device_number=int(shards), list_callback=self.callbacks, last_save_ckpt_step=None, latest_ckpt_file=None,
            metrics={}, eval_results={})
        self.context = RunContext(self.params)

    @contextlib.contextmanager
    def running(self) -> Iterator["CallbackRunner"]:
        """The run: each callback's context entered, ``on_train_begin`` first and ``on_train_end`` last (when
        the block ends without an exception)."""
        with contextlib.ExitStack() as stack:
            for callback in self.callbacks:
                stack.enter_context(callback)
            self._call("on_train_begin")
            yield self
            self._call("on_train_end")

    def epoch_begin(self, stage, epoch: int, step: int = 0) -> None:
        """Epoch ``epoch`` (0-based) of ``stage`` starts, at ``step`` when a resumed epoch continues."""
        self.params.update(train_network=stage.train_network, optimizer=stage.optimizer,
                           train_dataset=stage.train_dataset, batch_num=stage.steps_per_epoch, cur_epoch_num=epoch + 1,
                           cur_step_num=epoch * stage.steps_per_epoch + step, metrics={}, eval_results={})
        self._call("on_train_epoch_begin")

    def step_end(self, epoch: int, step: int, loss: float) -> None:
        """Step ``step`` (1-based) of ``epoch`` ended with ``loss``; raise StopRequested when a callback asks."""
        if not self.callbacks:
            return
        self.params.update(cur_step_num=epoch * self.params.batch_num + step,
                           net_outputs=ms.Tensor(np.float32(loss)))
        self._call("on_train_step_end")
        if self.context.get_stop_requested():
            raise StopRequested(f"a callback requested a stop at epoch {epoch + 1}, step {step}")

    def epoch_end(self, scores: Optional[Dict[str, float]]) -> bool:
        """The epoch ended, evaluated with ``scores`` (None: not evaluated); True when a callback asks to stop."""
        metrics = {} if scores is None else {"accuracy": scores["accuracy"], "top5": scores["top5"],
                                             "eval_loss": scores["loss"]}
        self.params.update(metrics=metrics, eval_results=dict(metrics))
        self._call("on_train_epoch_end")
        return self.context.get_stop_requested()

    def _call(self, hook: str) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self.context)
