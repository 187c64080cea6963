"""Data-parallel scaling: training images/s with 1, 2, ... msrun workers on this machine.

Usage:
    python bench/scaling.py [--devices 1 2] [--arch resnet18] [--stem cifar] [--batch-size 16]
                            [--steps 6] [--data-dir DIR] [--device CPU]

Each run goes through ``scripts/run_distribute_train.sh`` (msrun, DATA_PARALLEL, sharded data),
i.e. exactly the code path users get. ``--batch-size`` is per worker, so the global batch grows
with the workers (weak scaling). Each run trains 2 epochs of ``--steps`` steps; epoch 1 includes
graph compilation, so images/s comes from epoch 2 (rank 0's metrics.csv: global images / s).
The test split is cut to 64 images so that the final evaluation stays short.
"""
from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "run_distribute_train.sh"
DEFAULT_DATA = Path(os.environ.get("MINDRESNET_SUBSET", REPO.parent / "shared" / "data" / "cifar10-subset"))
RECORD_BYTES = 3073
TEST_RECORDS = 64


def small_test_copy(data_dir: Path, dest: Path) -> Path:
    """``dest/cifar-10-batches-bin``: links to the training files, and a test file of 64 records."""
    source = data_dir / "cifar-10-batches-bin" if (data_dir / "cifar-10-batches-bin").is_dir() else data_dir
    if not (source / "data_batch_1.bin").is_file():
        raise SystemExit(f"no CIFAR-10 binary files in {data_dir} (pass --data-dir)")
    folder = dest / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for path in source.iterdir():
        if path.name != "test_batch.bin":
            (folder / path.name).symlink_to(path.resolve())
    with open(source / "test_batch.bin", "rb") as handle:
        (folder / "test_batch.bin").write_bytes(handle.read(TEST_RECORDS * RECORD_BYTES))
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(workers: int, args: argparse.Namespace, data: Path, work: Path) -> Dict[str, float]:
    """One launcher run; returns its epoch-2 row of metrics.csv plus the wall time."""
    ckpt = work / f"workers{workers}"
    command = ["bash", str(SCRIPT), "--device", args.device, "--devices", str(workers),
               "--master-port", str(free_port()), "--arch", args.arch, "--stem", args.stem,
               "--pretrained", "false", "--download", "false", "--data-dir", str(data), "--epochs", "2",
               "--eval-every", "2", "--batch-size", str(args.batch_size), "--max-steps-per-epoch", str(args.steps),
               "--ckpt-dir", str(ckpt)]
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-2000:] + result.stderr[-4000:])
        raise SystemExit(f"{workers} worker(s): the launcher failed (exit {result.returncode}); logs in {ckpt}/logs")
    with open(ckpt / "metrics.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return {"images_per_s": float(last["images_per_s"]), "wall_s": wall}


def table(results: Dict[int, Dict[str, float]], batch_size: int) -> str:
    base = results[min(results)]["images_per_s"]
    lines = ["| workers | global batch | images/s | speed-up | wall s (incl. start-up, compile) |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for workers, row in sorted(results.items()):
        lines.append(f"| {workers} | {workers * batch_size} | {row['images_per_s']:.1f} | "
                     f"{row['images_per_s'] / base:.2f}x | {row['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="processes per run, one per device")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--stem", default="cifar")
    parser.add_argument("--batch-size", type=int, default=16, help="per worker")
    parser.add_argument("--steps", type=int, default=6, help="steps per epoch")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mindresnet-scaling-") as tmp:
        data = small_test_copy(args.data_dir, Path(tmp) / "data")
        for workers in args.devices:
            print(f"running {workers} worker(s) ...", file=sys.stderr, flush=True)
            results[workers] = run(workers, args, data, Path(tmp))
    sys.path.insert(0, str(REPO / "bench"))
    from sides import cpu_line, mindspore_side  # imports mindresnet: only after the runs, whose env it would cap

    print(f"{cpu_line()}\n{mindspore_side()} (this process; each worker: the cores msrun pins it to)")
    print(f"{args.arch} (stem {args.stem}), {args.device}, batch {args.batch_size} per worker, "
          f"{args.steps} timed steps (epoch 2), {os.cpu_count()} CPU cores on this machine")
    print(table(results, args.batch_size))
    print("Each worker is a full training process: on CPU, msrun pins it to its share of the cores, so the "
          "workers split the same cores and a gain comes only from running the framework's serial parts "
          "side by side; the gradient all-reduce costs extra. On a host with one accelerator per worker, "
          "images/s should grow nearly linearly with the workers, less the all-reduce time.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
