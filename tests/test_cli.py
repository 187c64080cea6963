"""The command-line layer: console commands; user errors end as `error: ...` with exit 1, bugs keep their traceback."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mindresnet.tools import evaluate
from mindresnet.tools import export
from mindresnet.tools import predict
from mindresnet import train
from mindresnet.tools import visualize
from mindresnet.cli import EXIT_INTERRUPTED, EXIT_USER_ERROR, run_cli, run_guarded
from mindresnet.errors import CheckpointError, ConfigError, DataError, DeviceError, DownloadError, ExportError, \
    ImageError, MindresnetError, TrainingDiverged

from conftest import REPO


@pytest.mark.parametrize("error", [ConfigError, CheckpointError, DataError, DownloadError, DeviceError, ExportError,
                                   ImageError, TrainingDiverged])
def test_every_user_error_becomes_a_message(error, capsys):
    def fail():
        raise error("what went wrong and the fix")

    assert issubclass(error, MindresnetError)
    assert run_guarded(fail) == EXIT_USER_ERROR
    assert capsys.readouterr().err == "error: what went wrong and the fix\n"


def test_a_bug_keeps_its_traceback():
    def bug():
        raise ValueError("a bug, not a user error")

    with pytest.raises(ValueError, match="a bug"):
        run_guarded(bug)


def test_ctrl_c_exits_130():
    def interrupted():
        raise KeyboardInterrupt

    assert run_guarded(interrupted) == EXIT_INTERRUPTED == 130


def test_bad_flags_exit_2():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int)
    assert run_cli(parser, lambda args: 0, ["--n", "x"]) == 2


@pytest.mark.parametrize("main, argv, message", [
    (train.main, ["--epochs", "0"], "--epochs must be >= 1"),
    (train.main, ["--pretrained", "nowhere.ckpt"], "--pretrained nowhere.ckpt: no such file"),
    (evaluate.main, ["--ckpt", "nowhere.ckpt"], "nowhere.ckpt does not exist"),
    (visualize.main, ["--ckpt", "nowhere.ckpt", "--num", "0"], "--num must be at least 1"),
    (predict.main, ["nowhere.png", "--ckpt", "nowhere.ckpt"], "nowhere.png does not exist"),
    (export.main, ["--ckpt", "nowhere.ckpt"], "nowhere.ckpt does not exist"),
])
def test_each_tool_reports_user_errors_without_traceback(main, argv, message, capsys):
    assert main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_python_m_form_exits_with_the_code(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mindresnet.evaluate", "--ckpt", str(tmp_path / "none.ckpt")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == EXIT_USER_ERROR
    assert "Traceback" not in run.stderr and "error: Checkpoint" in run.stderr


def test_train_refuses_a_prefix_of_a_flag_and_takes_peer_names(capsys):
    with pytest.raises(SystemExit) as stopped:
        train.main(["--max-steps", "1"])
    assert stopped.value.code == 2 and "unrecognized arguments: --max-steps" in capsys.readouterr().err
    assert train.main(["--model", "resnet99"]) == EXIT_USER_ERROR
    assert "--arch 'resnet99' is not one of" in capsys.readouterr().err


BIN = Path(sys.executable).parent
CONSOLE_COMMANDS = {"mindresnet-train": "train", "mindresnet-evaluate": "tools.evaluate",
                    "mindresnet-predict": "tools.predict", "mindresnet-visualize": "tools.visualize",
                    "mindresnet-export": "tools.export", "mindresnet-convert": "tools.convert",
                    "mindresnet-lr-find": "tools.lr_find"}


def test_console_commands_are_installed_and_match_python_m():
    for command, module in CONSOLE_COMMANDS.items():
        script = BIN / command
        assert script.is_file(), f"{script} missing: run pip install -e ."
        assert f"from mindresnet.{module} import main" in script.read_text()
    by_command = subprocess.run([str(BIN / "mindresnet-train"), "--help"], capture_output=True, text=True,
                                timeout=120)
    by_module = subprocess.run([sys.executable, "-m", "mindresnet.train", "--help"], capture_output=True,
                               text=True, timeout=120)
    assert by_command.returncode == by_module.returncode == 0
    assert by_command.stdout == by_module.stdout and "--resume" in by_command.stdout
