"""mindresnet.training.config: defaults < YAML < flags, validation with messages that name the flag or file."""
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from mindresnet.errors import ConfigError
from mindresnet.training.config import TrainConfig, build_parser, parse_args, save_config


REPO_CONFIGS = ["configs/tutorial_resnet50.yaml", "configs/resnet18_cifar_scratch.yaml"]


def test_defaults_are_the_tutorial_recipe():
    config = parse_args([])
    assert (config.arch, config.pretrained, config.batch_size, config.image_size, config.epochs) == (
        "resnet50", "true", 256, 32, 5)
    assert (config.lr, config.min_lr, config.momentum, config.lr_schedule) == (1e-3, 1e-5, 0.9, "cosine")
    assert config.ckpt_dir == "ckpt" and config.weight_decay == 0.0
    assert config.freeze_epochs == 1  # the new head trains alone first


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


def test_timm_and_mindcv_flag_names_are_aliases():
    config = parse_args(["--model", "resnet18", "--opt", "adamw", "--sched", "step", "--img-size", "64",
                         "--smoothing", "0.1", "--model-ema", "--data_dir", "d", "--ckpt_save_dir", "c",
                         "--batch_size", "8", "--num_classes", "10", "--epoch_size", "3", "--amp_level", "O2",
                         "--num_parallel_workers", "2", "--val_interval", "2", "--freeze_backbone", "--min_lr", "0"])
    assert (config.arch, config.optimizer, config.lr_schedule, config.image_size, config.label_smoothing) == (
        "resnet18", "adamw", "step", 64, 0.1)
    assert (config.data_dir, config.ckpt_dir, config.batch_size, config.num_classes, config.epochs) == (
        "d", "c", 8, 10, 3)
    assert (config.amp, config.workers, config.eval_every, config.freeze_backbone, config.min_lr) == (
        "O2", 2, 2, True, 0.0)
    assert parse_args(["--lr_scheduler", "constant"]).lr_schedule == parse_args(["--scheduler", "constant"]).lr_schedule


@pytest.mark.parametrize("argv, expected", [
    (["--ema"], 0.9999), (["--model-ema"], 0.9999), (["--ema", "true"], 0.9999), (["--ema", "0.99"], 0.99),
    (["--ema", "false"], None), (["--ema", "--lr", "0.1"], 0.9999), ([], None)])
def test_ema_takes_a_decay_or_a_switch(argv, expected):
    assert parse_args(argv).ema == expected


def test_help_lists_the_aliases_and_prefixes_are_not_flags(capsys):
    text = " ".join(build_parser().format_help().split())
    for spelling in ("--arch, --model ARCH", "--optimizer, --opt OPTIMIZER", "--batch-size, --batch_size BATCH_SIZE",
                     "--lr-schedule, --lr_schedule, --sched, --scheduler, --lr_scheduler LR_SCHEDULE",
                     "--image-size, --image_size, --img-size, --image_resize IMAGE_SIZE",
                     "--ema, --model-ema, --model-ema-decay, --ema_decay [EMA]",
                     "--clip-grad, --clip_grad, --clip_value [CLIP_GRAD]", "--ckpt-dir, --ckpt_dir, --ckpt_save_dir CKPT_DIR"):
        assert spelling in text
    with pytest.raises(SystemExit):
        parse_args(["--optim", "sgd"])  # argparse would have read a prefix of --optimizer
    assert "unrecognized arguments: --optim" in capsys.readouterr().err


def test_yaml_keys_of_timm_and_mindcv_are_translated_with_a_note(tmp_path, caplog):
    path = tmp_path / "mindcv.yaml"
    path.write_text("model: resnet18\nopt: adamw\nscheduler: step\nimage_resize: 64\nckpt_save_dir: out\n"
                    "epoch_size: 3\nema: true\namp_level: O2\ndrop_path_rate: 0.1\nre_prob: 0.25\n")
    with caplog.at_level("INFO", logger="mindresnet.training.config"):
        config = parse_args(["--config", str(path)])
    assert (config.arch, config.optimizer, config.lr_schedule, config.image_size, config.ckpt_dir) == (
        "resnet18", "adamw", "step", 64, "out")
    assert (config.epochs, config.ema, config.amp, config.drop_path, config.reprob) == (3, 0.9999, "O2", 0.1, 0.25)
    assert "mindcv.yaml: key 'ckpt_save_dir' is mindresnet's ckpt_dir" in caplog.text
    path.write_text("model: resnet18\nmode: 0\n")
    with pytest.raises(ConfigError, match="mindcv.yaml: unknown key 'mode'"):
        parse_args(["--config", str(path)])
    path.write_text("opt: sgd\noptimizer: adamw\n")
    with pytest.raises(ConfigError, match="keys 'opt', 'optimizer' all set --optimizer; keep one"):
        parse_args(["--config", str(path)])


@pytest.mark.parametrize("yaml_text, ema, clip_grad", [
    ("ema: false\nema_decay: 0.9999\nclip_grad: false\nclip_value: 15.0\n", None, None),  # MindCV's defaults: off
    ("ema: true\nema_decay: 0.999\nclip_grad: true\nclip_value: 5\n", 0.999, 5.0),
    ("ema_decay: 0.99\nclip_value: 2\n", 0.99, 2.0),
    ("ema: true\nclip_grad: true\n", 0.9999, 15.0),
])
def test_mindcv_switch_and_value_keys_combine(tmp_path, yaml_text, ema, clip_grad):
    path = tmp_path / "mindcv.yaml"
    path.write_text(yaml_text)
    config = parse_args(["--config", str(path)])
    assert (config.ema, config.clip_grad) == (ema, clip_grad)


@pytest.mark.parametrize("argv, ema", [
    (["--model-ema", "--model-ema-decay", "0.999"], 0.999), (["--model-ema-decay", "0.999", "--model-ema"], 0.999),
    (["--ema_decay", "0.99", "--ema", "false"], None), (["--model-ema-decay", "0.995"], 0.995)])
def test_timm_ema_flags_combine(argv, ema):
    assert parse_args(argv).ema == ema


def test_callback_repeats_and_log_interval_is_checked(tmp_path):
    config = parse_args(["--callback", "mindspore.train:LossMonitor", "--callback", "my.module:Mine"])
    assert config.callback == ["mindspore.train:LossMonitor", "my.module:Mine"]
    path = tmp_path / "c.yaml"
    path.write_text("callback: [a.b:C]\nlog_interval: 50\n")
    assert (parse_args(["--config", str(path)]).callback, parse_args(["--config", str(path)]).log_interval) == (
        ["a.b:C"], 50)
    with pytest.raises(ConfigError, match="--log-interval must be >= 1"):
        parse_args(["--log-interval", "0"])


def test_flags_and_mindcv_spellings():
    config = parse_args(["--re_prob", "0.25", "--drop_path_rate", "0.1", "--color-jitter", "0.4"])
    assert (config.reprob, config.drop_path, config.color_jitter) == (0.25, 0.1, 0.4)
    assert parse_args(["--reprob", "0.5", "--drop-path", "0.2"]).drop_path == 0.2
