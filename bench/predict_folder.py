"""Folder prediction throughput: ``mindresnet.predict`` against its PyTorch twin on the same files.

Usage:
    python bench/predict_folder.py [--arch resnet18] [--stem cifar] [--image-size 32] [--images 256]
                                   [--file-size 64] [--batch-size 32] [--torch-python PYTHON] [--out r.json]

Writes ``--images`` random JPEGs of ``--file-size`` pixels into a folder tree, a mindresnet
checkpoint of ``--arch`` (random weights, CIFAR-10 metadata) and the same weights as a PyTorch
file. Each side then runs in its own process on the same folder: find the images by content,
decode, preprocess as in training (resize, /255, mean/std), ``--batch-size`` images per forward
pass, softmax, top-5. Reported per side:

* images/s of that loop, timed inside the process after the model is loaded and one untimed
  warm-up pass of the first batch (mindresnet: ``predict.find_images`` + ``predict.predict_images``
  in PyNative mode, as the command runs; PyTorch: ``bench/predict_folder_torch.py``);
* seconds of the whole command from spawn to exit (``python -m mindresnet.predict FOLDER --csv``
  against the twin script), imports and model loading included.

The top-1 classes of both sides must agree (same network, same pixels). The PyTorch processes
get the environment without mindresnet's oneDNN ISA cap (``sides.torch_env``); each side's CPU,
ISA and threads are printed with the figures.
"""
from __future__ import annotations

import argparse
import json
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

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_inputs(folder: Path, args: argparse.Namespace) -> Dict[str, Path]:
    """The image tree, the mindresnet checkpoint and its PyTorch copy, in ``folder``."""
    import mindspore as ms
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from mindresnet import __version__
    from mindresnet.checkpoint_meta import CheckpointMeta
    from mindresnet.data import cifar10_preprocess
    from mindresnet.models import create_model

    rng = np.random.default_rng(0)
    images = folder / "images"
    for index in range(args.images):
        sub = images / f"part{index % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (args.file_size, args.file_size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"{index:05d}.jpg", quality=90)
    ms.set_seed(0)
    net = create_model(args.arch, num_classes=10, stem=args.stem)
    meta = CheckpointMeta(arch=args.arch, num_classes=10, stem=args.stem,
                          preprocess=cifar10_preprocess(args.image_size), class_names=CLASS_NAMES, dataset="cifar10",
                          mindresnet=__version__)
    ckpt, torch_ckpt = save_both_sides(net, meta, folder, args.torch_python)
    return {"images": images, "ckpt": ckpt, "torch_ckpt": torch_ckpt}


def mindresnet_loop(folder: str, ckpt: str, batch_size: int) -> int:
    """The mindresnet side of the timed loop (run in a child process); prints its JSON result."""
    sys.path.insert(0, str(REPO))
    from mindresnet.tools import predict
    from mindresnet.runtime import setup_context
    from mindresnet.tools.eval_data import load_trained_model

    setup_context("CPU", mode="pynative")  # as the predict command runs
    net, meta = load_trained_model(ckpt)
    predict.predict_images(net, meta, predict.find_images([folder]).images[:batch_size], 5, batch_size)  # warm-up
    start = time.perf_counter()
    paths = predict.find_images([folder]).images
    results = predict.predict_images(net, meta, paths, 5, batch_size)
    seconds = time.perf_counter() - start
    print(json.dumps({"side": mindspore_side(), "images": len(paths), "seconds": seconds,
                      "top1": {row["path"]: [row["top"][0]["class"], row["top"][0]["probability"]]
                               for row in results}}))
    return 0


def run_json(command: List[str], env: Optional[dict] = None) -> Dict:
    """Run ``command`` and parse the JSON object on the last line of its stdout."""
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip().splitlines()[-3:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wall_seconds(command: List[str], env: Optional[dict] = None) -> float:
    """Seconds from spawning ``command`` to its exit (it must succeed)."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip().splitlines()[-3:]}")
    return seconds


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet18", help="resnet18/34/50/101/152 (the twin has no ResNeXt)")
    parser.add_argument("--stem", default="cifar", choices=("cifar", "imagenet"))
    parser.add_argument("--image-size", type=int, default=32, help="model input side")
    parser.add_argument("--images", type=int, default=256, help="JPEG files in the folder")
    parser.add_argument("--file-size", type=int, default=64, help="side of each JPEG in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--torch-python", default=sys.executable, help="Python with torch (default: this one)")
    parser.add_argument("--out", help="also write the figures as JSON")
    parser.add_argument("--mindresnet-loop", nargs=3, metavar=("FOLDER", "CKPT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mindresnet_loop:
        folder, ckpt, batch = args.mindresnet_loop
        return mindresnet_loop(folder, ckpt, int(batch))
    with tempfile.TemporaryDirectory() as tmp:
        files = write_inputs(Path(tmp), args)
        folder, batch = str(files["images"]), str(args.batch_size)
        # Every side starts without the cap this process inherited from importing mindresnet: PyTorch
        # must run uncapped, and mindresnet sets its own cap as it does for any user.
        mindresnet = run_json([sys.executable, __file__, "--mindresnet-loop", folder, str(files["ckpt"]), batch],
                              env=torch_env())
        twin = [args.torch_python, str(BENCH / "predict_folder_torch.py"), folder, "--ckpt", str(files["torch_ckpt"]),
                "--batch-size", batch]
        torch_run = run_json(twin, env=torch_env())
        command = [sys.executable, "-m", "mindresnet.predict", folder, "--ckpt", str(files["ckpt"]),
                   "--batch-size", batch, "--csv", str(Path(tmp) / "predictions.csv")]
        walls = {"mindresnet": wall_seconds(command, env=torch_env()), "torch": wall_seconds(twin, env=torch_env())}
    agree = sum(mindresnet["top1"][path][0] == torch_run["top1"][path][0] for path in mindresnet["top1"])
    print(cpu_line())
    print(f"mindresnet side: {mindresnet['side']}")
    print(f"PyTorch side:    {torch_run['side']}")
    print(f"{args.arch} ({args.stem} stem) at {args.image_size}x{args.image_size}, {args.images} JPEGs of "
          f"{args.file_size}x{args.file_size}, batch {args.batch_size}")
    report = {}
    for name, run in (("mindresnet", mindresnet), ("torch", torch_run)):
        report[name] = {"images_per_s": run["images"] / run["seconds"], "loop_s": run["seconds"],
                        "command_s": walls[name], "images": run["images"]}
        print(f"  {name:<10}  {report[name]['images_per_s']:8.1f} images/s (loop {run['seconds']:.2f} s), "
              f"whole command {walls[name]:.2f} s")
    print(f"  speed ratio mindresnet/PyTorch: {report['mindresnet']['images_per_s'] / report['torch']['images_per_s']:.2f}"
          f"; top-1 agreement {agree}/{len(mindresnet['top1'])}")
    if agree != len(mindresnet["top1"]):
        print("  WARNING: the two sides disagree on some top-1 classes", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "cpu": cpu_line(), "sides": {
            "mindresnet": mindresnet["side"], "torch": torch_run["side"]}, "results": report, "agree": agree},
            indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
