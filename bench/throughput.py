"""Training and inference throughput of mindresnet against the same model in PyTorch, on one CPU.

Usage:
    python bench/throughput.py [--quick] [--models resnet18 resnet50]
                               [--configs imagenet32-b32 imagenet32-b128 cifar32-b32 cifar32-b128 imagenet224-b8]
                               [--steps N | --seconds S] [--out results.json results.md]
                               [--torch-python PYTHON]

What it measures, per model and config (stem, image side, batch), for each framework:
  * training images/s of one full step (forward, backward, SGD momentum 0.9 update,
    cross-entropy on 10 classes). mindresnet: its real train step, ``build_train_step``
    in graph mode after ``runtime.setup_context("CPU")`` -- exactly what ``mindresnet.train``
    runs. PyTorch: an eager twin of the same architecture (``bench/torch_resnet.py``: same blocks,
    stems, BatchNorm, init) with ``torch.optim.SGD(momentum=0.9)`` and
    ``torch.set_num_threads(<cores>)``. Both read the loss back every step, as a training loop
    that logs it does (``mindresnet.train.run_epoch``);
  * inference images/s (eval mode, same batch, no gradients; mindresnet inside
    ``kernels.frozen_weights()``, as its evaluation and feature extraction run);
  * peak resident memory of the process (VmHWM), and the seconds of the first step (MindSpore:
    graph compilation).

How: each (framework, model, config) row runs in its own fresh subprocess, one after the other
(mindresnet first, then PyTorch), on a fixed random batch of the config's shape, so data loading
is excluded on both sides. The first step and one more warm-up step are not timed; then the
step count is either ``--steps`` or as many as fill ``--seconds`` (at least 3). The table gives
each mindresnet/PyTorch ratio (memory: lower is better). Timings need an otherwise idle machine:
the load average before and after the run is printed next to the table, and so is what each side
runs on (``bench/sides.py``): CPU model, AVX-512 or not, the oneDNN ISA cap in effect for MindSpore
(``mindresnet.cpu_isa.isa_report()``), the ISA PyTorch's oneDNN really dispatches, and each side's
threads. PyTorch rows start with the oneDNN ISA cap removed from their environment
(``sides.torch_env``), so mindresnet's AVX2 cap never slows PyTorch down.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sides import cpu_count, cpu_line, mindspore_side, torch_env, torch_side  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
NUM_CLASSES = 10
LR = 0.01
CONFIGS = {  # name: (stem, image side, batch)
    "imagenet32-b32": ("imagenet", 32, 32),
    "imagenet32-b128": ("imagenet", 32, 128),
    "cifar32-b32": ("cifar", 32, 32),
    "cifar32-b128": ("cifar", 32, 128),
    "imagenet224-b8": ("imagenet", 224, 8),
}
MODELS = ("resnet18", "resnet50")
FRAMEWORKS = ("mindresnet", "pytorch")
MIN_STEPS = 3


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(run_step: Callable[[], None], images_per_step: int, steps: Optional[int], seconds: float
            ) -> Dict[str, float]:
    """Time ``run_step``: first call and one warm-up call untimed, then ``steps`` (or ~``seconds``) calls."""
    start = time.perf_counter()
    run_step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    run_step()
    warm = time.perf_counter() - start
    count = steps or max(MIN_STEPS, math.ceil(seconds / max(warm, 1e-6)))
    start = time.perf_counter()
    for _ in range(count):
        run_step()
    elapsed = time.perf_counter() - start
    return {"images_per_s": count * images_per_step / elapsed, "steps": count, "first_step_s": first}


def child_mindresnet(model: str, stem: str, size: int, batch: int, steps: Optional[int], seconds: float,
                     infer_seconds: float) -> Dict[str, float]:
    """One row for mindresnet: its train step (as ``mindresnet.train`` builds it), then inference."""
    import mindspore as ms
    import numpy as np

    sys.path.insert(0, str(REPO))
    from mindresnet.kernels import frozen_weights
    from mindresnet.training.loss import build_loss
    from mindresnet.training.optim import build_optimizer
    from mindresnet.training.step import build_train_step
    from mindresnet.models import create_model
    from mindresnet.runtime import setup_context

    setup_context("CPU")
    ms.set_seed(0)
    net = create_model(model, num_classes=NUM_CLASSES, stem=stem)
    optimizer = build_optimizer(net.trainable_params(), "momentum", [LR] * 100_000, 0.9, 0.0)
    train_step = build_train_step(net, build_loss(), optimizer)
    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, NUM_CLASSES, batch).astype(np.int32))
    losses = []
    train = measure(lambda: losses.append(float(train_step(images, labels).asnumpy())), batch, steps, seconds)
    net.set_train(False)
    with frozen_weights():  # as mindresnet's evaluation and feature extraction run it
        infer = measure(lambda: net(images).asnumpy(), batch, steps, infer_seconds)
    return {"train": train, "infer": infer, "final_loss": losses[-1], "version": ms.__version__,
            "side": mindspore_side(cpu_count())}


def child_pytorch(model: str, stem: str, size: int, batch: int, steps: Optional[int], seconds: float,
                  infer_seconds: float) -> Dict[str, float]:
    """One row for PyTorch eager: the twin model, SGD momentum 0.9, cross-entropy, then inference."""
    import torch

    sys.path.insert(0, str(BENCH))
    from torch_resnet import create_model

    torch.set_num_threads(cpu_count())
    side = torch_side()  # first: it reads oneDNN's one-time verbose header
    torch.manual_seed(0)
    net = create_model(model, num_classes=NUM_CLASSES, stem=stem).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
    losses = []

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    train = measure(train_step, batch, steps, seconds)
    net.eval()

    def infer_step() -> None:
        with torch.inference_mode():
            net(images)

    infer = measure(infer_step, batch, steps, infer_seconds)
    return {"train": train, "infer": infer, "final_loss": losses[-1], "version": torch.__version__,
            "side": side}


def run_child(args: argparse.Namespace) -> int:
    """Measure one row in this process and print it as one ``RESULT {json}`` line."""
    stem, size, batch = CONFIGS[args.configs[0]]
    if args.child == "mindresnet":
        row = child_mindresnet(args.models[0], stem, size, batch, args.steps, args.seconds, args.infer_seconds)
    else:
        row = child_pytorch(args.models[0], stem, size, batch, args.steps, args.seconds, args.infer_seconds)
    row.update(framework=args.child, model=args.models[0], config=args.configs[0], batch=batch,
               peak_rss_mib=peak_rss_mib())
    print("RESULT " + json.dumps(row), flush=True)
    return 0


def spawn(framework: str, model: str, config: str, args: argparse.Namespace) -> Dict:
    """Run one row in a fresh interpreter; return its result (or the error it ended with)."""
    python = args.torch_python if framework == "pytorch" else sys.executable
    command = [python, str(Path(__file__).resolve()), "--child", framework, "--models", model,
               "--configs", config, "--seconds", str(args.seconds), "--infer-seconds", str(args.infer_seconds)]
    if args.steps:
        command += ["--steps", str(args.steps)]
    env = torch_env() if framework == "pytorch" else dict(os.environ)
    if args.no_cpu_kernels and framework == "mindresnet":
        env["MINDRESNET_CPU_KERNELS"] = "0"
    env["GLOG_v"] = os.environ.get("GLOG_v", "3")  # keep MindSpore's warnings out of the log
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
    return {"framework": framework, "model": model, "config": config, "error": " | ".join(tail)}


def machine() -> Dict[str, str]:
    """CPU model, AVX-512 or not, usable cores and Python version of this machine."""
    return {"cpu": cpu_line(), "python": platform.python_version()}


def ratio(ours: Optional[float], theirs: Optional[float]) -> str:
    return f"{ours / theirs:.2f}" if ours and theirs else "-"


def lookup(row: Dict, *keys: str) -> Optional[float]:
    """``row[k1][k2]...`` when it is a number, else None (a failed row)."""
    for key in keys:
        row = row.get(key, {}) if isinstance(row, dict) else {}
    return row if isinstance(row, (int, float)) else None


def markdown(rows: List[Dict], info: Dict) -> str:
    """The result table (one line per model and config) with the run's context above it."""
    lines = [f"Machine: {info['cpu']}; Python {info['python']}; "
             f"load average {info['load_before']} before, {info['load_after']} after; "
             f"{info['minutes']:.1f} min; mindresnet CPU kernels {info['cpu_kernels']}.",
             f"- mindresnet side: {info.get('mindspore_side', '?')}",
             f"- PyTorch side: {info.get('torch_side', '?')}", "",
             "| model | config | train img/s mindresnet | train img/s PyTorch | ratio | infer img/s mindresnet "
             "| infer img/s PyTorch | ratio | peak RSS MiB mindresnet | peak RSS MiB PyTorch | ratio "
             "| first step s mindresnet | first step s PyTorch |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pairs: Dict[tuple, Dict[str, Dict]] = {}
    for row in rows:
        pairs.setdefault((row["model"], row["config"]), {})[row["framework"]] = row
    for (model, config), pair in pairs.items():
        ms_row, pt_row = pair.get("mindresnet", {}), pair.get("pytorch", {})
        cells = []
        for keys in (("train", "images_per_s"), ("infer", "images_per_s"), ("peak_rss_mib",)):
            ours, theirs = lookup(ms_row, *keys), lookup(pt_row, *keys)
            cells += [f"{ours:.1f}" if ours else "error", f"{theirs:.1f}" if theirs else "error", ratio(ours, theirs)]
        for row in (ms_row, pt_row):
            first = lookup(row, "train", "first_step_s")
            cells.append(f"{first:.1f}" if first else "-")
        lines.append(f"| {model} | {config} | " + " | ".join(cells) + " |")
    errors = [f"- {r['framework']} {r['model']} {r['config']}: {r['error']}" for r in rows if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else []))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, help="timed steps per row (default: enough to fill --seconds)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed training seconds per row (default 10)")
    parser.add_argument("--infer-seconds", type=float, default=4.0, help="timed inference seconds per row (default 4)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 timed steps per row")
    parser.add_argument("--out", nargs="+", default=[], help="write the results to .json and/or .md files")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="interpreter with torch for the PyTorch rows (default: this one)")
    parser.add_argument("--no-cpu-kernels", action="store_true",
                        help="mindresnet on MindSpore's own convolutions (MINDRESNET_CPU_KERNELS=0: AVX2 cap, "
                             "small-map GEMM), to compare with its oneDNN kernels")
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = args.steps or MIN_STEPS
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    info = machine()
    info["cpu_kernels"] = "off" if args.no_cpu_kernels else "on"
    info["load_before"] = "%.2f %.2f %.2f" % os.getloadavg()
    start = time.perf_counter()
    rows = []
    for model in args.models:
        for config in args.configs:
            for framework in FRAMEWORKS:
                row = spawn(framework, model, config, args)
                rows.append(row)
                if "error" in row:
                    print(f"{framework:10s} {model} {config}: ERROR {row['error']}", flush=True)
                else:
                    info["mindspore_side" if framework == "mindresnet" else "torch_side"] = row["side"]
                    print(f"{framework:10s} {model} {config}: train {row['train']['images_per_s']:.1f} img/s "
                          f"({row['train']['steps']} steps), infer {row['infer']['images_per_s']:.1f} img/s, "
                          f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
    info["minutes"] = (time.perf_counter() - start) / 60
    info["load_after"] = "%.2f %.2f %.2f" % os.getloadavg()
    table = markdown(rows, info)
    print("\n" + table)
    for out in args.out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            path.write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
        else:
            path.write_text(table + "\n")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
