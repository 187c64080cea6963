"""mindresnet.tools.evaluate: the evaluate command: JSON, confusion and reliability figures, clear errors."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from conftest import CLASS_NAMES, SAMPLE
from mindresnet.tools import evaluate
from mindresnet.report import RELIABILITY_PNG
from mindresnet.checkpoint import read_checkpoint, save_checkpoint
from mindresnet.data.constants import RECORD_BYTES


def test_evaluate_cli_json_and_confusion_png(trained_ckpt, sample_dir, tmp_path, capsys):
    png = tmp_path / "cm.png"
    code = evaluate.main(["--ckpt", str(trained_ckpt), "--data-dir", str(sample_dir), "--batch-size", "32",
                          "--json", "--confusion", str(png)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["count"] == SAMPLE and 0 <= out["accuracy"] <= out["top5"] <= 1
    assert len(out["per_class"]) == 10 and np.array(out["confusion_matrix"]).sum() == SAMPLE
    assert out["confusion_png"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(out["macro_avg"]) == set(out["weighted_avg"]) == {"precision", "recall", "f1"}
    assert 0 <= out["ece"] <= 1 and sum(out["calibration"]["bin_counts"]) == SAMPLE
    assert {"precision", "recall", "f1"} <= set(out["per_class"][0])
    reliability = tmp_path / RELIABILITY_PNG  # beside the confusion matrix
    assert out["reliability_png"] == str(reliability) and reliability.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", RELIABILITY_PNG]  # no temporary file


def test_evaluate_cli_missing_data_dir_is_a_clear_error(trained_ckpt, tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    code = evaluate.main(["--ckpt", str(trained_ckpt), "--data-dir", str(missing), "--confusion", ""])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and str(missing) in err and "Traceback" not in err


def test_folder_checkpoint_evaluates_the_val_split(trained_ckpt, real_subset, tmp_path, capsys):
    raw = (real_subset / "test_batch.bin").read_bytes()[:SAMPLE * RECORD_BYTES]
    records = np.frombuffer(raw, np.uint8).reshape(SAMPLE, RECORD_BYTES)
    root = tmp_path / "photos"
    first_of_class = {int(label): index for index, label in reversed(list(enumerate(records[:, 0])))}
    for split, indices in (("train", sorted(first_of_class.values())), ("val", range(20))):
        for index in indices:
            folder = root / split / CLASS_NAMES[records[index, 0]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(records[index, 1:].reshape(3, 32, 32).transpose(1, 2, 0)).resize((48, 40)).save(
                folder / f"{index}.png")
    params, meta = read_checkpoint(trained_ckpt)
    ckpt = save_checkpoint(list(params.values()), tmp_path / "folder.ckpt", meta.replace(dataset="folder"))
    code = evaluate.main(["--ckpt", str(ckpt), "--data-dir", str(root), "--json", "--confusion", ""])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["count"] == 20


def test_report_is_printed_before_the_figures_are_written(trained_ckpt, sample_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = evaluate.main(["--ckpt", str(trained_ckpt), "--data-dir", str(sample_dir), "--batch-size", "32",
                          "--confusion", str(blocker / "cm.png")])
    captured = capsys.readouterr()
    assert code == 1 and "error: " in captured.err
    assert "weighted avg" in captured.out and "ECE" in captured.out
