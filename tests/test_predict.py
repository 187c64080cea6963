"""mindresnet.predict and the checkpoint checks every tool shares: images of any mode, folders, batches,
CSV/JSON, corrupt files, --ckpt, bad input."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from conftest import CLASS_NAMES, REPO
from mindresnet.tools import predict
from mindresnet.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from mindresnet.data.constants import RECORD_BYTES
from mindresnet.tools.eval_data import build_eval_dataset, load_trained_model
from mindresnet.models import create_model
from test_export import write_checkpoint


def real_image(subset, index: int) -> Image.Image:
    """Test record ``index`` of the real subset as a 32x32 RGB PIL image."""
    raw = (subset / "test_batch.bin").read_bytes()[index * RECORD_BYTES:(index + 1) * RECORD_BYTES]
    return Image.fromarray(np.frombuffer(raw[1:], np.uint8).reshape(3, 32, 32).transpose(1, 2, 0))


@pytest.fixture(scope="module")
def images(real_subset, tmp_path_factory):
    """Real test images saved as JPEG/PNG of several sizes and modes (RGB, RGBA, L, P)."""
    folder = tmp_path_factory.mktemp("images")
    files = {"exact.png": real_image(real_subset, 0),
             "rgb.jpg": real_image(real_subset, 1).resize((200, 150)),
             "rgba.png": real_image(real_subset, 2).convert("RGBA").resize((48, 64)),
             "gray.png": real_image(real_subset, 3).convert("L"),
             "palette.png": real_image(real_subset, 4).convert("P")}
    for name, image in files.items():
        image.save(folder / name)
    return {name: folder / name for name in files}


@pytest.fixture(scope="module")
def model(trained_ckpt):
    return load_trained_model(trained_ckpt)


@pytest.fixture(scope="module")
def other_ckpts(trained_ckpt, tmp_path_factory):
    """Checkpoints that are not the trained one: random weights with the same metadata, no metadata,
    and a 5-class head whose metadata claims 10 classes."""
    folder = tmp_path_factory.mktemp("other")
    meta = read_checkpoint(trained_ckpt)[1]
    random10 = create_model("resnet18", 10, stem="cifar")
    plain = folder / "no_meta" / "plain.ckpt"  # as MindSpore writes it
    plain.parent.mkdir()
    ms.save_checkpoint(random10, str(plain))
    return {"random": save_checkpoint(random10, folder / "random.ckpt", meta), "no_meta": plain,
            "five": save_checkpoint(create_model("resnet18", 5, stem="cifar"), folder / "five.ckpt", meta)}


def test_predict_images_of_any_mode_and_size(model, images):
    net, meta = model
    paths = [images[name] for name in ("rgb.jpg", "rgba.png", "gray.png", "palette.png")]
    results = predict.predict_images(net, meta, paths, topk=3)
    assert [r["path"] for r in results] == [str(p) for p in paths]
    for result in results:
        probs = [entry["probability"] for entry in result["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert all(entry["class"] == CLASS_NAMES[entry["index"]] for entry in result["top"])
    every = predict.predict_images(net, meta, paths[:1], topk=0)[0]["top"]
    assert sorted(e["class"] for e in every) == sorted(CLASS_NAMES)
    assert sum(e["probability"] for e in every) == pytest.approx(1.0, abs=1e-5)


def test_preprocessing_matches_the_training_pipeline(model, images, real_subset):
    _, meta = model
    dataset, _ = build_eval_dataset(meta, real_subset, batch_size=1)
    first = next(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))[0]
    np.testing.assert_allclose(predict.preprocess_files([images["exact.png"]], meta), first, atol=1e-5)


def run_json(capsys, argv):
    code = predict.main(argv + ["--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)["predictions"]


def test_ckpt_flag_is_really_used(trained_ckpt, other_ckpts, images, capsys):
    image = str(images["exact.png"])
    trained = run_json(capsys, [image, "--ckpt", str(trained_ckpt), "--topk", "0"])[0]["top"]
    random = run_json(capsys, [image, "--ckpt", str(other_ckpts["random"]), "--topk", "0"])[0]["top"]
    by_class = [{e["class"]: e["probability"] for e in top} for top in (trained, random)]
    assert max(abs(by_class[0][c] - by_class[1][c]) for c in CLASS_NAMES) > 1e-3


def test_text_output_lists_topk_classes(trained_ckpt, images, capsys):
    assert predict.main([str(images["gray.png"]), "--ckpt", str(trained_ckpt), "--topk", "2"]) == 0
    assert ms.get_context("mode") == ms.PYNATIVE_MODE  # a few images: no graph compile
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(images["gray.png"]) and len(lines) == 3
    assert all(line.split()[0] in CLASS_NAMES and 0 <= float(line.split()[1]) <= 1 for line in lines[1:])


def assert_clear_error(capsys, argv, *needles):
    code = predict.main(argv)
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_missing_image_is_a_clear_error(trained_ckpt, tmp_path, capsys):
    missing = tmp_path / "missing.jpg"
    assert_clear_error(capsys, [str(missing), "--ckpt", str(trained_ckpt)], str(missing), "does not exist")


def test_file_that_is_not_an_image_is_a_clear_error(trained_ckpt, tmp_path, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("not pixels")
    assert_clear_error(capsys, [str(fake), "--ckpt", str(trained_ckpt)], str(fake), "not an image")


def test_other_architecture_is_a_clear_error(trained_ckpt, images, capsys):
    assert_clear_error(capsys, [str(images["exact.png"]), "--ckpt", str(trained_ckpt), "--arch", "resnet34"],
                       str(trained_ckpt), "resnet34", "resnet18")


def test_other_class_count_is_a_clear_error(trained_ckpt, other_ckpts, images, capsys):
    assert_clear_error(capsys, [str(images["exact.png"]), "--ckpt", str(trained_ckpt), "--num-classes", "5"],
                       str(trained_ckpt), "num_classes=10")
    with pytest.raises(CheckpointError, match=r"five\.ckpt has a classifier head of shape \(5, 512\)"):
        load_trained_model(other_ckpts["five"])


def test_checkpoint_without_metadata_needs_arch_and_num_classes(other_ckpts, images, capsys):
    plain, image = other_ckpts["no_meta"], str(images["exact.png"])
    assert_clear_error(capsys, [image, "--ckpt", str(plain)], str(plain), "no mindresnet metadata", "--arch",
                       "--num-classes")
    assert_clear_error(capsys, [image, "--ckpt", str(plain), "--arch", "resnet34", "--num-classes", "10"],
                       str(plain), "does not fit resnet34")
    generic = run_json(capsys, [image, "--ckpt", str(plain), "--arch", "resnet18", "--num-classes", "10"])
    assert generic[0]["top"][0]["class"].startswith("class_")  # no names anywhere
    indices = plain.parent / "class_indices.json"
    indices.write_text(json.dumps({str(i): name.upper() for i, name in enumerate(CLASS_NAMES)}))
    try:
        net, meta = load_trained_model(plain, arch="resnet18", num_classes=10)
    finally:
        indices.unlink()
    assert meta.stem == "cifar" and meta.image_size == 32  # read off the stem conv
    assert meta.class_names == [name.upper() for name in CLASS_NAMES]
    assert net.convention == "tutorial"  # mindresnet's (the tutorial's) names, no metadata: the tutorial's padding
    net, meta = load_trained_model(plain, arch="resnet18", num_classes=10, convention="mindcv")
    assert net.convention == meta.convention == "mindcv"


def test_convention_flag_may_not_contradict_the_metadata(trained_ckpt, images, capsys):
    assert_clear_error(capsys, [str(images["exact.png"]), "--ckpt", str(trained_ckpt), "--convention", "torch"],
                       str(trained_ckpt), "--convention torch", "convention='mindcv'")


@pytest.mark.slow
def test_predict_command_in_a_subprocess(trained_ckpt, images):
    done = subprocess.run([sys.executable, "-m", "mindresnet.predict", str(images["rgb.jpg"]), str(images["gray.png"]),
                           "--ckpt", str(trained_ckpt), "--json"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    predictions = json.loads(done.stdout)["predictions"]
    assert [len(p["top"]) for p in predictions] == [5, 5]


# Folders, batches, CSV/JSON and broken files: a random-weight checkpoint and generated images, no dataset.

@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("random") / "resnet18.ckpt")


def random_image(seed: int, size=(40, 30), mode: str = "RGB") -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.fixture
def photo_folder(tmp_path):
    """Images at two depths (one without an extension), a text file, a text file named .png, and a
    JPEG cut in half (its header reads, its pixels do not)."""
    root = tmp_path / "photos"
    (root / "b" / "c").mkdir(parents=True)
    random_image(0).save(root / "a.png")
    random_image(1, (64, 64)).save(root / "b" / "d.jpg")
    random_image(2, mode="L").save(root / "b" / "c" / "noext", format="PNG")
    random_image(3, mode="RGBA").save(root / "b" / "c" / "e.png")
    (root / "notes.txt").write_text("not an image")
    (root / "b" / "fake.png").write_text("not pixels either")
    whole = root / "whole.jpg"
    random_image(4, (96, 96)).save(whole)
    (root / "b" / "cut.jpg").write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    whole.unlink()
    return root


def test_folder_is_searched_recursively_and_a_corrupt_image_is_skipped_with_exit_3(random_ckpt, photo_folder,
                                                                                   capsys):
    code = predict.main([str(photo_folder), "--ckpt", str(random_ckpt), "--json", "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == predict.EXIT_SOME_FAILED == 3, captured.err
    report = json.loads(captured.out)
    rows = {Path(row["path"]).relative_to(photo_folder).as_posix(): row for row in report["predictions"]}
    assert sorted(rows) == ["a.png", "b/c/e.png", "b/c/noext", "b/cut.jpg", "b/d.jpg"]  # by content, not name
    assert "truncated" in rows["b/cut.jpg"]["error"] and "top" not in rows["b/cut.jpg"]
    assert all(len(row["top"]) == 5 for name, row in rows.items() if name != "b/cut.jpg")
    skipped = {Path(entry["path"]).name: entry["reason"] for entry in report["skipped"]}
    assert sorted(skipped) == ["fake.png", "notes.txt"] and "not an image" in skipped["fake.png"]
    assert f"failed {photo_folder / 'b' / 'cut.jpg'}: not a readable image" in captured.err
    assert f"skipped {photo_folder / 'notes.txt'}: not an image" in captured.err
    assert "1 of 5 images could not be read" in captured.err and "exit code 3" in captured.err


def test_a_broken_file_with_an_image_signature_is_a_failed_image(random_ckpt, tmp_path, capsys):
    root = tmp_path / "photos"
    root.mkdir()
    random_image(0).save(root / "good.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (root / "broken-jpeg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 8)
    (root / "notes.txt").write_text("not an image")
    code = predict.main([str(root), "--ckpt", str(random_ckpt), "--json"])
    captured = capsys.readouterr()
    assert code == predict.EXIT_SOME_FAILED, captured.err
    report = json.loads(captured.out)
    errors = {Path(row["path"]).name: row.get("error") for row in report["predictions"]}
    assert errors["good.png"] is None
    assert "a corrupt PNG image" in errors["broken.png"] and "not a readable image" in errors["broken-jpeg"]
    assert [Path(entry["path"]).name for entry in report["skipped"]] == ["notes.txt"]
    assert f"failed {root / 'broken.png'}: a corrupt PNG image" in captured.err


def test_batch_size_does_not_change_the_predictions(random_ckpt, tmp_path):
    net, meta = load_trained_model(random_ckpt)
    paths = []
    for seed in range(5):
        paths.append(tmp_path / f"{seed}.png")
        random_image(seed, (32 + 8 * seed, 32)).save(paths[-1])
    one_pass = predict.predict_images(net, meta, paths, topk=0, batch_size=8)
    for batch_size in (1, 2):
        batched = predict.predict_images(net, meta, paths, topk=0, batch_size=batch_size)
        assert [row["path"] for row in batched] == [str(path) for path in paths]
        for got, want in zip(batched, one_pass):
            assert [e["class"] for e in got["top"]] == [e["class"] for e in want["top"]]
            np.testing.assert_allclose([e["probability"] for e in got["top"]],
                                       [e["probability"] for e in want["top"]], rtol=1e-4, atol=1e-6)
    assert len({row["top"][0]["probability"] for row in one_pass}) > 1  # different images, different outputs


def test_csv_has_one_row_per_image(random_ckpt, photo_folder, tmp_path, capsys):
    out = tmp_path / "out" / "predictions.csv"
    code = predict.main([str(photo_folder / "a.png"), str(photo_folder / "b"), "--ckpt", str(random_ckpt),
                         "--csv", str(out), "--topk", "2"])
    captured = capsys.readouterr()
    assert code == 3 and captured.out.strip() == f"wrote 5 rows to {out}: 4 predicted, 1 failed"
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "class_1", "probability_1", "class_2", "probability_2", "error"]
    assert [Path(row["path"]).name for row in rows] == ["a.png", "e.png", "noext", "cut.jpg", "d.jpg"]
    assert rows[3]["class_1"] == "" and "truncated" in rows[3]["error"]
    net, meta = load_trained_model(random_ckpt)
    good = [Path(row["path"]) for row in rows if not row["error"]]
    for row, want in zip([row for row in rows if not row["error"]], predict.predict_images(net, meta, good, topk=2)):
        assert [row["class_1"], row["class_2"]] == [entry["class"] for entry in want["top"]]
        assert float(row["probability_1"]) == pytest.approx(want["top"][0]["probability"], abs=1e-5)


def test_named_non_image_among_images_fails_only_itself(random_ckpt, photo_folder, capsys):
    code = predict.main([str(photo_folder / "a.png"), str(photo_folder / "notes.txt"), "--ckpt", str(random_ckpt)])
    captured = capsys.readouterr()
    assert code == 3 and captured.out.splitlines()[0] == str(photo_folder / "a.png")
    assert f"failed {photo_folder / 'notes.txt'}: not an image" in captured.err


def test_folder_without_images_is_a_clear_error(random_ckpt, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("text")
    assert_clear_error(capsys, [str(tmp_path / "docs"), "--ckpt", str(random_ckpt)], "No image to predict",
                       str(tmp_path / "docs"))


def test_predict_images_reuses_blocked_weights_with_plain_calls_results(random_ckpt, tmp_path):
    """predict_images runs its batches inside kernels.frozen_weights() (one weight reorder per
    convolution, not per batch) and gives what iter_predictions gives outside it."""
    from mindresnet.kernels import conv, kernels_active

    net, meta = load_trained_model(random_ckpt)
    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"{seed}.png")
        random_image(seed).save(paths[-1])
    depths = []

    class Recorder:
        def set_train(self, mode):
            net.set_train(mode)

        def __call__(self, images):
            depths.append(conv._frozen_depth[0])
            return net(images)

    plain = list(predict.iter_predictions(Recorder(), meta, paths, topk=0, batch_size=2))
    frozen = predict.predict_images(Recorder(), meta, paths, topk=0, batch_size=2)
    assert depths == [0, 0] + [1 if kernels_active() else 0] * 2
    for got, want in zip(frozen, plain):
        np.testing.assert_allclose([e["probability"] for e in got["top"]],
                                   [e["probability"] for e in want["top"]], rtol=1e-5, atol=1e-7)
