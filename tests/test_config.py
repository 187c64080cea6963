"""Configuration: defaults < YAML < flags, validation with messages that name the flag or file."""
import pytest
import yaml

from mindresnet.config import ConfigError, TrainConfig, parse_args, save_config

REPO_CONFIGS = ["configs/tutorial_resnet50.yaml", "configs/resnet18_cifar_scratch.yaml"]


def test_defaults_are_the_tutorial_recipe():
    config = parse_args([])
    assert (config.arch, config.pretrained, config.batch_size, config.image_size, config.epochs) == (
        "resnet50", "true", 256, 32, 5)
    assert (config.lr, config.min_lr, config.momentum, config.lr_schedule) == (1e-3, 1e-5, 0.9, "cosine")
    assert config.ckpt_dir == "ckpt" and config.weight_decay == 0.0


def test_cli_beats_yaml_beats_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("arch: resnet18\nlr: 0.1\nbatch-size: 64\nfreeze_backbone: true\n")
    config = parse_args(["--config", str(path), "--lr", "0.2"])
    assert (config.arch, config.lr, config.batch_size, config.freeze_backbone) == ("resnet18", 0.2, 64, True)
    assert config.epochs == 5


@pytest.mark.parametrize("path", REPO_CONFIGS)
def test_shipped_configs_parse(path):
    from pathlib import Path

    config = parse_args(["--config", str(Path(__file__).resolve().parents[1] / path)])
    assert config.config.endswith(path.split("/")[-1])


def test_resnet18_config_is_the_scratch_recipe():
    from pathlib import Path

    config = parse_args(["--config", str(Path(__file__).resolve().parents[1] / REPO_CONFIGS[1])])
    assert (config.arch, config.stem, config.lr, config.weight_decay) == ("resnet18", "cifar", 0.1, 5e-4)
    assert config.pretrained_value() is False


@pytest.mark.parametrize("argv, message", [
    (["--warmup-epochs", "5"], "--warmup-epochs .* smaller than --epochs"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--lr-schedule", "linear"], "--lr-schedule must be one of"),
    (["--amp", "O4"], "--amp must be one of"),
    (["--pretrained", "missing.ckpt"], "--pretrained missing.ckpt: no such file"),
    (["--image-size", "16"], "--image-size must be >= 32"),
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
    assert "expected true or false" in capsys.readouterr().err


def test_saved_config_round_trips(tmp_path):
    config = TrainConfig(arch="resnet34", lr=0.3)
    save_config(config, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["lr"] == 0.3
    assert parse_args(["--config", str(tmp_path / "config.yaml")]).arch == "resnet34"
