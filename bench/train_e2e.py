"""End to end: ``scripts/run_train.sh`` against its PyTorch eager twin, process start to exit.

Usage:
    python bench/train_e2e.py [--arch resnet50] [--stem imagenet] [--epochs 2] [--batch-size 128]
                              [--lr 0.05] [--data-dir DIR] [--repeats 1] [--max-steps-per-epoch N]
                              [--torch-python PYTHON] [--out e2e.json]

Runs, alternately and ``--repeats`` times each, in fresh temporary checkpoint folders:

    bash scripts/run_train.sh --device CPU --arch A --stem S --pretrained false --epochs E
                              --batch-size B --lr LR --data-dir DIR --ckpt-dir TMP
    python bench/train_e2e_torch.py --arch A --stem S --epochs E --batch-size B --lr LR
                                    --data-dir DIR --ckpt-dir TMP

(the twin does the same epochs, per-epoch evaluation, best/last checkpoints, metrics and curves
on the same data: see its docstring), and reports per side the median wall seconds from spawn
to exit (graph compilation, data, evaluation, checkpoints included), the peak RSS of the
process, its per-epoch images/s and final accuracy, and the ratio PyTorch wall / mindresnet
wall (above 1: mindresnet faster). The mindresnet run gets the environment this script started
with (so mindresnet applies its own oneDNN cap, or the user's); the PyTorch run gets it without
any oneDNN ISA cap (``sides.torch_env``). Both sides' CPU, ISA and threads are printed.
The default is the 2-epoch ResNet-50 run of issue 12 (about 2 x 1 min on a 2-core machine).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from sides import cpu_line, torch_env  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-bin"


def timed(command: List[str], env: Dict[str, str]) -> Dict:
    """Wall seconds, peak RSS (MiB), exit code and output of ``command`` run to its end."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024.0, "returncode": proc.returncode,
            "output": output}


def epoch_rows(metrics_csv: Path) -> List[Dict[str, float]]:
    """The numeric columns of a metrics.csv's rows (``eval_split`` names a split)."""
    def number(value):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    with open(metrics_csv, newline="") as handle:
        return [{key: number(value) for key, value in row.items() if number(value) is not None}
                for row in csv.DictReader(handle)]


def side_line(output: str, pattern: str) -> str:
    """The first output line matching ``pattern`` (each side logs what it runs on), without its log prefix."""
    for line in output.splitlines():
        found = re.search(pattern, line)
        if found:
            return line[found.start():].strip()
    return "not reported"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-steps-per-epoch", type=int, help="short mode (smoke test): cap steps per epoch")
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    common = ["--arch", args.arch, "--stem", args.stem, "--epochs", str(args.epochs), "--batch-size",
              str(args.batch_size), "--lr", str(args.lr), "--data-dir", str(args.data_dir)]
    if args.max_steps_per_epoch:
        common += ["--max-steps-per-epoch", str(args.max_steps_per_epoch)]
    env = dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable))
    sides = {
        "mindresnet": (["bash", str(REPO / "scripts" / "run_train.sh"), "--device", "CPU", "--pretrained", "false"],
                       env, r"CPU .*kernel threads", "{arch}-last.ckpt"),
        "pytorch": ([args.torch_python, str(BENCH / "train_e2e_torch.py")], torch_env(env), r"PyTorch .*threads",
                    "{arch}-last.pt"),
    }
    load_before = "%.2f %.2f %.2f" % os.getloadavg()
    runs: Dict[str, List[Dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="mindresnet-e2e-") as tmp:
        for repeat in range(args.repeats):
            for name, (command, side_env, pattern, last) in sides.items():
                ckpt = Path(tmp) / f"{name}-{repeat}"
                run = timed(command + common + ["--ckpt-dir", str(ckpt)], side_env)
                if run["returncode"] != 0 or not (ckpt / last.format(arch=args.arch)).is_file():
                    sys.stderr.write(run["output"][-3000:])
                    raise SystemExit(f"{name} run failed (exit {run['returncode']})")
                run.update(side=side_line(run["output"], pattern), epochs=epoch_rows(ckpt / "metrics.csv"))
                del run["output"]
                runs[name].append(run)
                print(f"{name:10s} run {repeat + 1}: {run['seconds']:.1f} s wall, peak RSS "
                      f"{run['peak_rss_mib']:.0f} MiB, img/s per epoch "
                      f"{', '.join('%.1f' % row['images_per_s'] for row in run['epochs'])}, final accuracy "
                      f"{run['epochs'][-1].get('accuracy', float('nan')):.3f}", flush=True)
    result = {"cpu": cpu_line(), "load_before": load_before, "load_after": "%.2f %.2f %.2f" % os.getloadavg(),
              "command": common, "runs": runs}
    for name, done in runs.items():
        result[name] = {"median_s": statistics.median(r["seconds"] for r in done),
                        "peak_rss_mib": max(r["peak_rss_mib"] for r in done), "side": done[0]["side"]}
    ours, theirs = result["mindresnet"], result["pytorch"]
    result["ratio"] = theirs["median_s"] / ours["median_s"]
    steps = f", at most {args.max_steps_per_epoch} steps an epoch" if args.max_steps_per_epoch else ""
    print(f"\n{result['cpu']}; load average {load_before} before, {result['load_after']} after")
    print(f"- mindresnet side: {ours['side']}\n- PyTorch side: {theirs['side']}")
    print(f"{args.arch} ({args.stem} stem), {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}{steps}; "
          f"median of {args.repeats}")
    print("| side | wall s | peak RSS MiB |\n|---|---:|---:|")
    for name in sides:
        print(f"| {name} | {result[name]['median_s']:.1f} | {result[name]['peak_rss_mib']:.0f} |")
    print(f"speed ratio (PyTorch wall / mindresnet wall): {result['ratio']:.2f}; memory ratio "
          f"(mindresnet / PyTorch): {ours['peak_rss_mib'] / theirs['peak_rss_mib']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
