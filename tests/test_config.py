"""Configuration: defaults < YAML < flags, validation with messages that name the flag or file."""
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from mindresnet.config import ConfigError, TrainConfig, build_parser, parse_args, save_config

REPO_CONFIGS = ["configs/tutorial_resnet50.yaml", "configs/resnet18_cifar_scratch.yaml"]


def test_defaults_are_the_tutorial_recipe():
    config = parse_args([])
    assert (config.arch, config.pretrained, config.batch_size, config.image_size, config.epochs) == (
        "resnet50", "true", 256, 32, 5)
    assert (config.lr, config.min_lr, config.momentum, config.lr_schedule) == (1e-3, 1e-5, 0.9, "cosine")
    assert config.ckpt_dir == "ckpt" and config.weight_decay == 0.0
    assert config.freeze_epochs == 1  # the new head trains alone first


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


def test_cli_beats_yaml_beats_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("arch: resnet18\nlr: 0.1\nbatch-size: 64\nfreeze_backbone: true\n")
    config = parse_args(["--config", str(path), "--lr", "0.2"])
    assert (config.arch, config.lr, config.batch_size, config.freeze_backbone) == ("resnet18", 0.2, 64, True)
    assert config.epochs == 5


@pytest.mark.parametrize("path", REPO_CONFIGS)
def test_shipped_configs_apply_every_key(path):
    file = Path(__file__).resolve().parents[1] / path
    config = parse_args(["--config", str(file)])
    for key, value in yaml.safe_load(file.read_text()).items():
        got = config.pretrained_value() if key == "pretrained" else getattr(config, key.replace("-", "_"))
        assert got == value, key


def test_resnet18_config_is_the_scratch_recipe():
    config = parse_args(["--config", str(Path(__file__).resolve().parents[1] / REPO_CONFIGS[1])])
    assert (config.arch, config.stem, config.lr, config.weight_decay) == ("resnet18", "cifar", 0.1, 5e-4)
    assert config.pretrained_value() is False


@pytest.mark.parametrize("argv, message", [
    (["--warmup-epochs", "5"], "--warmup-epochs .* smaller than --epochs"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--lr-schedule", "linear"], "--lr-schedule must be one of"),
    (["--amp", "O4"], "--amp must be one of"),
    (["--pretrained", "missing.ckpt"], "--pretrained missing.ckpt: no such file"),
    (["--image-size", "16"], "--image-size must be in \\[32, 2048\\]"),
    (["--head-lr", "0.1", "--freeze-epochs", "0"], "--head-lr applies to the head-only epochs of --freeze-epochs N"),
    (["--arch", "resnet99"], "--arch 'resnet99' is not one of"),
])
def test_invalid_values_name_the_flag(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(argv)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        parse_args(["--config", str(tmp_path / "none.yaml")])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown\.yaml: unknown key 'learning_rate'"):
        parse_args(["--config", str(unknown)])
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_args(["--config", str(broken)])


def test_bad_flag_value_exits_with_usage(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--freeze-backbone", "maybe"])
    assert "--freeze-backbone: expected one of true/yes/1/on/false/no/0/off, got 'maybe'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    ([], False),
    (["--freeze-backbone"], True),
    (["--freeze-backbone", "--lr", "0.1"], True),
    (["--freeze-backbone", "false"], False),
    (["--freeze-backbone", "yes"], True),
    (["--no-freeze-backbone"], False),
])
def test_boolean_flags_bare_negated_or_valued(argv, expected):
    assert parse_args(argv).freeze_backbone is expected


@pytest.mark.parametrize("argv, expected", [
    ([], None),
    (["--resume"], Path("ckpt/resnet50-last.ckpt")),
    (["--resume", "--lr", "0.1"], Path("ckpt/resnet50-last.ckpt")),
    (["--resume", "yes", "--ckpt-dir", "runs/a"], Path("runs/a/resnet50-last.ckpt")),
    (["--resume", "false"], None),
    (["--no-resume"], None),
])
def test_resume_as_a_boolean_continues_the_ckpt_dir(argv, expected):
    assert parse_args(argv).resume_checkpoint() == expected


def test_resume_path_continues_that_run_in_its_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    last = run / "resnet18-last.ckpt"
    last.write_bytes(b"x")
    config = parse_args(["--arch", "resnet18", "--resume", str(last)])
    assert (config.ckpt_dir, config.resume_checkpoint()) == (str(run), last)
    assert parse_args(["--arch", "resnet18", "--resume", str(run), "--ckpt-dir", str(run)]).resume_checkpoint() == last
    with pytest.raises(ConfigError, match=r"continues the run in .*run, but --ckpt-dir is .*other.*--init-from"):
        parse_args(["--resume", str(last), "--ckpt-dir", str(tmp_path / "other")])
    with pytest.raises(ConfigError, match="--resume .*missing.ckpt: no such checkpoint or run folder"):
        parse_args(["--resume", str(tmp_path / "missing.ckpt")])


def test_init_from_takes_the_place_of_pretrained(tmp_path):
    trained = tmp_path / "resnet18-best.ckpt"
    trained.write_bytes(b"x")
    config = parse_args(["--init-from", str(trained)])
    assert (config.init_from, config.pretrained, config.freeze_epochs) == (str(trained), "false", 0)
    with pytest.raises(ConfigError, match="--init-from takes the weights of .*: drop --pretrained mindcv"):
        parse_args(["--init-from", str(trained), "--pretrained", "mindcv"])
    with pytest.raises(ConfigError, match="--init-from .*none.ckpt: no such checkpoint file"):
        parse_args(["--init-from", str(tmp_path / "none.ckpt")])


def test_pretrained_flag_takes_a_boolean_or_a_path(tmp_path):
    weights = tmp_path / "w.ckpt"
    weights.write_bytes(b"x")
    assert parse_args(["--pretrained"]).pretrained_value() is True
    assert parse_args(["--no-pretrained"]).pretrained_value() is False
    assert parse_args(["--pretrained", "false"]).pretrained_value() is False
    assert parse_args(["--pretrained", str(weights)]).pretrained_value() == str(weights)


@pytest.mark.parametrize("text, expected", [("true", True), ("false", False), ('"false"', False), ("'no'", False),
                                            ("yes", True), ("1", True), ('"0"', False), ("off", False)])
def test_yaml_booleans(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(f"freeze_backbone: {text}\n")
    assert parse_args(["--config", str(path)]).freeze_backbone is expected


@pytest.mark.parametrize("text, message", [
    ("freeze_backbone: maybe", "key 'freeze_backbone': 'maybe' is not a valid bool"),
    ("epochs: 2.5", "key 'epochs': 2.5 is not a valid int"),
    ("lr: fast", "key 'lr': 'fast' is not a valid float"),
    ("epochs: true", "key 'epochs': True is not a valid int"),
])
def test_yaml_bad_values_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=f"bad.yaml: {message}"):
        parse_args(["--config", str(path)])


def test_yaml_and_flags_convert_alike(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: '7'\nnum_classes: null\nwarmup_epochs: 1\n")
    from_yaml = parse_args(["--config", str(path)])
    from_flags = parse_args(["--epochs", "7", "--num-classes", "none", "--warmup-epochs", "1"])
    assert (from_yaml.epochs, from_yaml.num_classes, from_yaml.warmup_epochs) == (7, None, 1.0)
    assert (from_flags.epochs, from_flags.num_classes, from_flags.warmup_epochs) == (7, None, 1.0)


def test_every_flag_has_help():
    helps = {action.dest: action.help for action in build_parser()._actions if action.help != "==SUPPRESS=="}
    for field in fields(TrainConfig):
        assert helps[field.name] and not helps[field.name].startswith(" (default"), field.name


def test_saved_config_round_trips(tmp_path):
    config = TrainConfig(arch="resnet34", lr=0.3)
    save_config(config, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["lr"] == 0.3
    assert parse_args(["--config", str(tmp_path / "config.yaml")]).arch == "resnet34"
