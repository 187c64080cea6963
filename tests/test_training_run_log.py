"""mindresnet.training.run_log: train.log beside the checkpoints, and --log-interval progress lines off a terminal."""
import logging
import sys

from mindresnet.training.run import fit
from mindresnet.training.progress import EpochProgress
from mindresnet.training.run_folder import own_folder
from mindresnet.training.run_log import LOG_FILE, ProgressLines, run_log

from conftest import tiny_config


def test_run_log_copies_the_records_while_the_run_lasts(tmp_path):
    log = logging.getLogger("mindresnet.test_run_log")
    with run_log(tmp_path):
        log.warning("during the run")
    log.warning("after the run")
    assert (tmp_path / LOG_FILE).read_text().splitlines()[0].endswith("WARNING during the run")
    with run_log(tmp_path, append=True):
        log.warning("resumed")
    with run_log(tmp_path, enabled=False):  # a rank other than 0
        log.warning("not rank 0")
    assert [line.split(" ", 2)[2] for line in (tmp_path / LOG_FILE).read_text().splitlines()] == [
        "WARNING during the run", "WARNING resumed"]


def test_progress_lines_every_n_steps_only_off_a_terminal(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="mindresnet.training")
    for tty, expected in ((True, 0), (False, 2)):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
        lines, progress = ProgressLines(2, epochs=3), EpochProgress()
        caplog.clear()
        for _ in range(5):
            progress.count_step(0.5, 0, 0.0, "")
            lines.step(0, 5, progress, 0.5)
        assert len(caplog.records) == expected
    assert caplog.messages[-1].startswith("epoch 1/3, step 4/5: loss 0.5000 (epoch mean 0.5000)")


def test_a_run_writes_train_log_and_overwrite_moves_it_aside(tiny_cifar, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ckpt = tmp_path / "ckpt"
    fit(tiny_config(tiny_cifar, ckpt, epochs=1, log_interval=1))
    text = (ckpt / LOG_FILE).read_text()
    assert "INFO training resnet18" in text and "epoch 1/1, step 2/2: loss" in text and "\r" not in text
    with own_folder(ckpt, overwrite=True):
        assert not (ckpt / LOG_FILE).exists()
    assert [path.name for path in ckpt.glob(f"previous-*/{LOG_FILE}")] == [LOG_FILE]
