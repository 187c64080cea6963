"""The fine-tuning recipe: which stages a run has, and the defaults that depend on the flags.

Read as fastai's ``fine_tune``: a run with ``--pretrained`` weights that trains every layer first
trains the head alone for :data:`DEFAULT_HEAD_EPOCHS` epoch(s) at :data:`HEAD_LR_FACTOR` x ``--lr``
(features computed once), then every layer at ``--lr``; ``--freeze-epochs N`` and ``--head-lr``
set the two, ``--linear-probe`` makes the whole run the head stage.
"""
from __future__ import annotations

from typing import Any, List, Tuple

HEAD_LR_FACTOR = 5.0  # default --head-lr as a multiple of --lr
DEFAULT_HEAD_EPOCHS = 1  # head-only epochs of --pretrained runs when --freeze-epochs is unset


def fill_defaults(config) -> None:
    """Set an unset ``--freeze-epochs`` (a TrainConfig's): :data:`DEFAULT_HEAD_EPOCHS` for a ``--pretrained``
    run that trains every layer and has epochs to spare after them (bench/transfer.py, README
    "Fine-tuning"), else 0."""
    if config.freeze_epochs is None:
        head_first = (config.wants_pretrained() and not (config.linear_probe or config.freeze_backbone)
                      and config.warmup_epochs < config.epochs - DEFAULT_HEAD_EPOCHS)
        config.freeze_epochs = DEFAULT_HEAD_EPOCHS if head_first else 0


def head_epochs(config) -> int:
    """Epochs that train only the head on cached features: all with --linear-probe, else --freeze-epochs."""
    return config.epochs if config.linear_probe else config.freeze_epochs


def head_stage_lr(config) -> Tuple[float, str]:
    """(peak LR of the head-only epochs, the flag that sets it): --lr for a linear probe; for
    --freeze-epochs, --head-lr or :data:`HEAD_LR_FACTOR` x --lr (the head/full ratio bench/transfer.py uses)."""
    if config.linear_probe:
        return config.lr, "--lr"
    if config.head_lr:
        return config.head_lr, "--head-lr"
    return HEAD_LR_FACTOR * config.lr, "--head-lr (unset: 5 x --lr)"


def probe_conflicts(config) -> List[Tuple[Any, str]]:
    """(value, flag) of the options a linear probe cannot honour; a truthy value means it is set."""
    return [(config.freeze_epochs, "--freeze-epochs"),
            (config.head_lr, "--head-lr (set the probe's rate with --lr)"),
            (config.mixup or config.cutmix, "--mixup/--cutmix"), (config.auto_augment, "--auto-augment"),
            (config.reprob or config.color_jitter, "--reprob/--color-jitter"), (config.drop_path, "--drop-path"),
            (config.sampler, "--sampler"),
            (config.ema, "--ema"), (config.grad_accum > 1, "--grad-accum"), (config.clip_grad, "--clip-grad"),
            (config.layer_decay != 1.0 or config.head_lr_scale != 1.0, "--layer-decay/--head-lr-scale")]


def checks(config) -> List[Tuple[bool, str]]:
    """The recipe's consistency, as (holds, message naming the flags) pairs (after :func:`fill_defaults`)."""
    found = [
        (0 <= config.freeze_epochs < config.epochs,
         f"--freeze-epochs ({config.freeze_epochs}) must be >= 0 and smaller than --epochs ({config.epochs}); "
         "to train only the head for the whole run, use --linear-probe"),
        (config.head_lr is None or config.freeze_epochs > 0 or config.linear_probe,
         "--head-lr applies to the head-only epochs of --freeze-epochs N; pass --freeze-epochs too"),
        (not (config.freeze_epochs and config.freeze_backbone),
         "--freeze-epochs unfreezes the backbone after N epochs, --freeze-backbone never does: pass one"),
        (config.warmup_epochs < config.epochs - config.freeze_epochs,
         f"--warmup-epochs ({config.warmup_epochs}) must be smaller than the epochs after --freeze-epochs "
         f"({config.epochs - config.freeze_epochs})"),
    ]
    if config.linear_probe:
        found += [(not value, f"--linear-probe trains only the head on fixed features: {flag} does not apply")
                  for value, flag in probe_conflicts(config)]
    return found


def stage_plan(config) -> List[Tuple[str, int, int]]:
    """(stage, first epoch, end epoch) of each stage of the run: head-only epochs first
    (``--linear-probe``: all of them; ``--freeze-epochs N``: N), then every layer."""
    head = head_epochs(config)
    return [(name, first, end) for name, first, end in (("head", 0, head), ("full", head, config.epochs))
            if end > first]
