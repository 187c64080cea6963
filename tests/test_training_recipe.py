"""mindresnet.training.recipe: the stages of a run, the --freeze-epochs default, the head LR and the checks."""
import pytest

from mindresnet.training.config import parse_args
from mindresnet.training.recipe import head_stage_lr


@pytest.mark.parametrize("argv,head_epochs", [
    ([], 1),
    (["--freeze-epochs", "0"], 0),
    (["--freeze-epochs", "3"], 3),
    (["--pretrained", "false"], 0),  # nothing to protect from a random head
    (["--epochs", "1"], 0),
    (["--freeze-backbone"], 0),
    (["--linear-probe"], 0),
    (["--epochs", "3", "--warmup-epochs", "2"], 0),  # the warm-up needs every remaining epoch
])
def test_unset_freeze_epochs_means_one_head_epoch_for_pretrained_runs_that_have_room(argv, head_epochs):
    assert parse_args(argv).freeze_epochs == head_epochs


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
    assert head_stage_lr(TrainConfig(epochs=5, freeze_epochs=2, lr=0.01)) == (0.05, "--head-lr (unset: 5 x --lr)")
    assert head_stage_lr(TrainConfig(linear_probe=True, lr=0.02)) == (0.02, "--lr")
