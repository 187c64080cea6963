"""Learning-rate schedules, and what the validation accuracy decides: plateau cuts and early stopping."""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional

from mindspore import nn

from mindresnet.training.optim import scale_learning_rates

LR_SCHEDULES = ("cosine", "cosine_epoch", "onecycle", "step", "constant", "plateau")


def lr_schedule(name: str, lr: float, min_lr: float, epochs: int, steps_per_epoch: int,
                warmup_epochs: float = 0.0) -> List[float]:
    """Learning rate of every step of the run.

    Args:
        name: ``cosine`` (warm-up, then cosine from ``lr`` to ``min_lr``, a new rate every step),
            ``cosine_epoch`` (the same cosine, one rate per epoch: MindSpore's ``nn.cosine_decay_lr``,
            the tutorial's schedule, whose last epoch stays above ``min_lr``), ``onecycle`` (linear
            rise from ``lr/25`` over ``warmup_epochs`` or 30% of the run, then cosine to ``min_lr``),
            ``step`` (x0.1 at 50% and 75% of the run), ``constant``, or ``plateau`` (constant after
            the warm-up; :class:`PlateauMonitor` lowers it when the test accuracy stops improving).
        lr: peak learning rate.
        min_lr: final learning rate of cosine and onecycle.
        epochs, steps_per_epoch: length of the run.
        warmup_epochs: epochs of linear warm-up from ``lr/25``.
    """
    total = max(1, epochs * steps_per_epoch)
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if name == "onecycle" and warmup == 0:
        warmup = int(0.3 * total)
    start = lr / 25.0
    rates = []
    for step in range(total):
        if step < warmup:
            rates.append(start + (lr - start) * step / warmup)
            continue
        progress = (step - warmup) / max(1, total - warmup)
        if name == "cosine_epoch":
            progress = ((step - warmup) // steps_per_epoch) / max(1, -(-(total - warmup) // steps_per_epoch))
        if name in ("cosine", "cosine_epoch", "onecycle"):
            rates.append(min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress)))
        elif name == "step":
            rates.append(lr * (0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))))
        elif name in ("constant", "plateau"):
            rates.append(lr)
        else:
            raise ValueError(f"Unknown learning-rate schedule {name!r}.")
    return rates


class PlateauMonitor:
    """Test accuracy watcher with the semantics of MindSpore's ``ReduceLROnPlateau`` and ``EarlyStopping``.

    An evaluation improves when its accuracy beats the best so far by more than ``min_delta``; after
    ``patience`` evaluations without improvement, :meth:`step` says so (and, for a plateau, waits
    ``patience`` more before saying it again: the callback's ``wait`` reset, without cooldown).

    The callbacks themselves are not used: they expect ``Model.train``'s run context (this loop
    is custom), ``ReduceLROnPlateau`` rejects per-step and per-group learning rates ("does not
    support dynamic learning rate and group learning rate"), and their state is not saved, whereas
    this monitor is replayed from ``metrics.csv`` on resume (:meth:`replay`).
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best, self.wait = -math.inf, 0

    def step(self, accuracy: float) -> bool:
        """Record an epoch's accuracy; True when ``patience`` epochs passed without improvement."""
        if accuracy > self.best + self.min_delta:
            self.best, self.wait = accuracy, 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.wait = 0
            return True
        return False

    def replay(self, accuracies: Iterable[float]) -> int:
        """Feed earlier epochs' accuracies (NaN: not evaluated, skipped); return how many triggered."""
        return sum(self.step(value) for value in accuracies if not math.isnan(value))


class AccuracyWatch:
    """What the test accuracy decides after each evaluation: plateau LR cuts and early stopping.

    Args:
        optimizer: whose learning-rate tables a plateau multiplies by ``factor`` (not below ``min_lr``).
        plateau_patience: evaluations without improvement before a cut; None: no plateau schedule.
        early_stop: evaluations without improvement before stopping; None: never stop early.
    """

    def __init__(self, optimizer: nn.Optimizer, plateau_patience: Optional[int], early_stop: Optional[int],
                 min_lr: float = 0.0, factor: float = 0.1):
        self.optimizer, self.min_lr, self.factor = optimizer, min_lr, factor
        self.plateau = PlateauMonitor(plateau_patience) if plateau_patience else None
        self.early = PlateauMonitor(early_stop) if early_stop else None

    def observe(self, accuracy: float) -> bool:
        """Record one evaluation; cut the LR on a plateau; True when training should stop."""
        if self.plateau is not None and self.plateau.step(accuracy):
            scale_learning_rates(self.optimizer, self.factor, self.min_lr)
        return self.early is not None and self.early.step(accuracy)

    def replay(self, accuracies: Iterable[float]) -> None:
        """Bring a resumed run to the state its earlier evaluations left (NaN: not evaluated)."""
        for accuracy in accuracies:
            if not math.isnan(accuracy):
                self.observe(accuracy)


def accuracy_watch(stage, config, history: List[Dict[str, float]]) -> AccuracyWatch:
    """Plateau cuts and early stopping for ``stage``: only the run's last stage has them (a head stage
    before a full one always runs its N epochs). Replays the stage's earlier evaluations of a resumed run."""
    last = stage.end_epoch == config.epochs
    watch = AccuracyWatch(stage.optimizer,
                          config.plateau_patience if last and config.lr_schedule == "plateau" else None,
                          config.early_stop if last else None, config.min_lr)
    watch.replay(row.get("accuracy", math.nan) for row in history if row["epoch"] > stage.first_epoch)
    return watch
