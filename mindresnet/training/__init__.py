"""Training, one concern per module:

- :mod:`~mindresnet.training.config`: ``TrainConfig``, its typed sections, flags and YAML.
- :mod:`~mindresnet.training.recipe`: the stages of a run and the fine-tuning defaults.
- :mod:`~mindresnet.training.run`: :func:`fit`, the run's record (checkpoints, metrics, best.json) and the top-k saver.
- :mod:`~mindresnet.training.stages`: the ``Stage`` protocol, ``HeadStage`` and ``FullStage``.
- :mod:`~mindresnet.training.features`: cached backbone features and the head's trainer.
- :mod:`~mindresnet.training.step`: the graph-mode train step, EMA, the CPU kernel switch.
- :mod:`~mindresnet.training.optim`, :mod:`~mindresnet.training.schedule`, :mod:`~mindresnet.training.loss`:
  optimizers and parameter groups; LR schedules, plateau and early stop; the loss.
- :mod:`~mindresnet.training.progress`, :mod:`~mindresnet.training.signals`, :mod:`~mindresnet.training.resume`:
  the epoch in progress and its data order; stopping on a signal; continuing where a run stopped.
- :mod:`~mindresnet.training.callbacks`, :mod:`~mindresnet.training.run_log`,
  :mod:`~mindresnet.training.metrics_log`, :mod:`~mindresnet.training.run_folder`: MindSpore callbacks,
  train.log, metrics.csv and the curves, the run's ownership of its folder.
"""
from mindresnet.training.config import TrainConfig, parse_args
from mindresnet.training.run import FitResult, fit

__all__ = ["FitResult", "TrainConfig", "fit", "parse_args"]
