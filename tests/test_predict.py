"""mindresnet.predict and the checkpoint checks every tool shares: images of any mode, --ckpt, bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from conftest import CLASS_NAMES, REPO
from mindresnet import predict
from mindresnet.checkpoint import CheckpointError, read_metadata, save_checkpoint
from mindresnet.data.constants import RECORD_BYTES
from mindresnet.inference import build_eval_dataset, load_trained_model
from mindresnet.models import create_model


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
    meta = read_metadata(trained_ckpt)
    random10 = create_model("resnet18", 10, stem="cifar")
    return {"random": save_checkpoint(random10, folder / "random.ckpt", meta),
            "no_meta": save_checkpoint(random10, folder / "no_meta" / "plain.ckpt"),
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
    assert_clear_error(capsys, [str(fake), "--ckpt", str(trained_ckpt)], str(fake), "not a readable image")


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
    assert meta["stem"] == "cifar" and meta["image_size"] == 32  # read off the stem conv
    assert meta["class_names"] == [name.upper() for name in CLASS_NAMES]


@pytest.mark.slow
def test_predict_command_in_a_subprocess(trained_ckpt, images):
    done = subprocess.run([sys.executable, "-m", "mindresnet.predict", str(images["rgb.jpg"]), str(images["gray.png"]),
                           "--ckpt", str(trained_ckpt), "--json"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    predictions = json.loads(done.stdout)["predictions"]
    assert [len(p["top"]) for p in predictions] == [5, 5]
