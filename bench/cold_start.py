"""Cold start of single-image prediction: ``python -m mindresnet.predict`` against a PyTorch script.

Usage:
    python bench/cold_start.py [--arch resnet50] [--repeats 5] [--torch-python PYTHON] [--out cold.json]

Writes a checkpoint of ``--arch`` (random weights, 10 CIFAR-10 classes, ImageNet stem, 32x32,
metadata as ``mindresnet.train`` stores it), the same weights as a PyTorch file, and one 32x32
PNG. Then it times, from process start to exit after the printed result, alternately:

    python -m mindresnet.predict IMAGE --ckpt CKPT
    python bench/predict_torch.py IMAGE --ckpt CKPT.pt    (load weights, preprocess, print probabilities)

and reports the median and fastest of ``--repeats`` runs each. Both must print the same
probabilities (checked: they are the same network on the same pixels). When
``mindresnet/predict.py`` does not exist, the mindresnet side is skipped with a note.

Writing the checkpoint imports mindresnet here, which sets its oneDNN ISA cap in this process's
environment: mindresnet runs get the environment this script started with, PyTorch runs the one
of ``sides.torch_env`` (no cap). What each side runs on is printed before the timings.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from sides import cpu_line, mindspore_side, save_both_sides, torch_env  # noqa: E402

STARTING_ENV = dict(os.environ)  # before mindresnet's import adds its cap
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_inputs(folder: Path, arch: str, torch_python: str) -> Dict[str, Path]:
    """Create the mindresnet checkpoint, its PyTorch copy and a test image in ``folder``."""
    import mindspore as ms
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from mindresnet import __version__
    from mindresnet.checkpoint_meta import CheckpointMeta
    from mindresnet.data import cifar10_preprocess
    from mindresnet.models import create_model

    ms.set_seed(0)
    meta = CheckpointMeta(arch=arch, num_classes=10, stem="imagenet", preprocess=cifar10_preprocess(32),
                          class_names=CLASS_NAMES, dataset="cifar10", mindresnet=__version__)
    net = create_model(arch, num_classes=10, stem="imagenet")
    ckpt, torch_ckpt = save_both_sides(net, meta, folder, torch_python)
    image = folder / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    return {"ckpt": ckpt, "torch_ckpt": torch_ckpt, "image": image}


def timed_run(command: List[str], env: Dict[str, str]) -> Dict:
    """Wall seconds from spawning ``command`` (in ``env``) to its exit, and its stdout."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip().splitlines()[-3:]}")
    return {"seconds": seconds, "stdout": proc.stdout}


def probabilities(stdout: str) -> Dict[str, float]:
    """``{class: probability}`` from the ``  class  0.1234`` lines both scripts print."""
    found = {}
    for line in stdout.splitlines():
        parts = line.split()
        if line.startswith("  ") and len(parts) == 2:
            found[parts[0]] = float(parts[1])
    return found


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50", choices=["resnet18", "resnet50"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_inputs(Path(tmp), args.arch, args.torch_python)
        commands = {"pytorch": [args.torch_python, str(BENCH / "predict_torch.py"), str(paths["image"]),
                                "--ckpt", str(paths["torch_ckpt"])]}
        note = None
        if (REPO / "mindresnet" / "predict.py").is_file():
            commands["mindresnet"] = [sys.executable, "-m", "mindresnet.predict", str(paths["image"]),
                                      "--ckpt", str(paths["ckpt"])]
        else:
            note = "mindresnet/predict.py does not exist yet: mindresnet side skipped"
        envs = {"pytorch": torch_env(STARTING_ENV), "mindresnet": STARTING_ENV}
        runs: Dict[str, List[Dict]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                runs[name].append(timed_run(command, envs[name]))
    probe = subprocess.run([args.torch_python, "-c", "import sides; print(sides.torch_side())"], cwd=BENCH,
                           capture_output=True, text=True, env=torch_env(STARTING_ENV))
    sides = {"cpu": cpu_line(), "mindresnet": mindspore_side(), "pytorch": probe.stdout.strip() or probe.stderr}
    print(f"{sides['cpu']}\n- mindresnet side: {sides['mindresnet']}\n- PyTorch side: {sides['pytorch']}")
    result = {"arch": args.arch, "repeats": args.repeats, "note": note, "sides": sides}
    for name, done in runs.items():
        seconds = [run["seconds"] for run in done]
        result[name] = {"median_s": statistics.median(seconds), "min_s": min(seconds), "all_s": seconds,
                        "probabilities": probabilities(done[0]["stdout"])}
        print(f"{name:10s} cold start, {args.arch}, one image: median {result[name]['median_s']:.2f} s, "
              f"fastest {result[name]['min_s']:.2f} s ({args.repeats} runs)")
    if "mindresnet" in result:
        ours, theirs = result["mindresnet"]["probabilities"], result["pytorch"]["probabilities"]
        result["same_prediction"] = bool(ours) and ours.keys() == theirs.keys() and all(
            abs(ours[k] - theirs[k]) <= 2e-4 for k in ours)
        print(f"ratio mindresnet/PyTorch (median): "
              f"{result['mindresnet']['median_s'] / result['pytorch']['median_s']:.2f}; "
              f"same printed probabilities: {result['same_prediction']}")
    if note:
        print(f"note: {note}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
