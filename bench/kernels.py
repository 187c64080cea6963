"""Single-kernel timings of the ResNet train step: mindresnet's CPU kernels and MindSpore's under each
oneDNN ISA cap, against PyTorch.

Usage:
    python bench/kernels.py [--caps kernels AVX2] [--rounds 3] [--repeats 5] [--ops conv3x3-l1 bn-l1 ...]
                            [--torch-python PYTHON] [--out kernels.json]

The side ``kernels`` runs the convolutions and BatchNorms on mindresnet's own CPU kernels
(``mindresnet/kernels``: oneDNN's blocked jit convolutions, its BatchNorm), without an ISA cap;
the other ops of that side are MindSpore's, uncapped.

Which kernels of ResNet-50 (ImageNet stem, 32x32, batch 128) and ResNet-18 (CIFAR stem, batch 32)
lose against PyTorch, and what an ISA cap changes for each. Every op is timed forward alone and
forward + backward (gradients of its input and of its weight / scale, from a fixed output
gradient), in graph mode for MindSpore (``runtime.setup_context("CPU")``, the same kernels the
train step compiles), eagerly with autograd for PyTorch. The small-map ops are the matrix
products that ``mindresnet.kernels.small_map.SmallMapConv2d`` (the fallback without the kernels)
computes on 2x2 and 1x1 maps.

Each (framework, cap) side runs in its own process, because oneDNN reads its ISA cap once per
process: MindSpore with ``ONEDNN_MAX_CPU_ISA`` set to each ``--caps`` entry, PyTorch without any
cap (``sides.torch_env``). The sides are interleaved ``--rounds`` times; a cell is the median,
over rounds, of each round's median of ``--repeats`` calls (after two warm-up calls), as
wall-clock ms and as CPU ms of the process (all its threads). On a loaded machine the CPU ms of a
single-threaded run (``--threads 1``) is the steadiest measure of a kernel's own efficiency; the
load average is printed. ``ALL`` (no cap) is accepted but skips the convolutions, which then run
oneDNN's reference kernel (seconds per call).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from sides import cpu_count, cpu_line, torch_env  # noqa: E402

# name: (kind, shape); conv shape (N, C, H, W, O, kernel, stride); matmul (M, K, N) as rows @ W.T;
# bn and pool shape (N, C, H, W). ResNet-50 32x32 batch 128 unless the name says r18.
OPS = {
    "stem7x7": ("conv", (128, 3, 32, 32, 64, 7, 2)),
    "maxpool": ("pool", (128, 64, 16, 16)),
    "conv3x3-l1": ("conv", (128, 64, 8, 8, 64, 3, 1)),
    "conv1x1-l1": ("conv", (128, 64, 8, 8, 256, 1, 1)),
    "conv3x3s2-l2": ("conv", (128, 128, 8, 8, 128, 3, 2)),
    "conv1x1-l2": ("conv", (128, 128, 4, 4, 512, 1, 1)),
    "mm1x1-l3": ("matmul", (512, 1024, 256)),
    "mm3x3px-l3": ("matmul", (128, 1024, 256)),
    "mm1x1-l4": ("matmul", (128, 2048, 512)),
    "bn-l1": ("bn", (128, 256, 8, 8)),
    "bn-l3": ("bn", (128, 1024, 2, 2)),
    "r18-conv3x3-32": ("conv", (32, 64, 32, 32, 64, 3, 1)),
    "r18-bn-32": ("bn", (32, 64, 32, 32)),
}


def median_ms(call, repeats: int) -> Dict[str, float]:
    """Median wall and process-CPU milliseconds of ``call`` after two warm-up calls."""
    call()
    call()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}


def mindspore_child(names: List[str], repeats: int, threads: int, own_kernels: bool) -> Dict[str, Dict]:
    import numpy as np
    import mindspore as ms
    from mindspore import nn, ops

    sys.path.insert(0, str(REPO))
    from mindresnet import kernels
    from mindresnet.cpu_isa import isa_report
    from mindresnet.kernels.batch_norm import _BatchNormTraining
    from mindresnet.kernels.conv import _library, _OneDnnConvolution
    from mindresnet.kernels.small_map import _MATMUL_NT
    from mindresnet.runtime import setup_context

    setup_context("CPU", threads=threads)
    rng = np.random.default_rng(0)

    def tensor(*shape):
        return ms.Tensor(rng.standard_normal(shape).astype(np.float32))

    class Op(nn.Cell):
        def __init__(self, kind, shape):
            super().__init__()
            self.kind = kind
            self.own = own_kernels and kind in ("conv", "bn")
            if kind == "conv":
                out, kernel, stride = shape[4:]
                self.op = ops.Conv2D(out, kernel, pad_mode="pad", pad=kernel // 2, stride=stride)
                if self.own:
                    cell = nn.Conv2d(shape[1], out, kernel, stride, pad_mode="pad", padding=kernel // 2)
                    self.op = _OneDnnConvolution(_library[0], cell)
                    self.config = ms.Tensor(np.array([stride, stride, kernel // 2, kernel // 2, 1], np.int64))
            elif kind == "bn":
                self.op = _BatchNormTraining(_library[0]) if self.own else ops.BatchNorm(is_training=True)
                self.config = ms.Tensor(np.array([1e-5, 0.1], np.float32))
                self.mean, self.var = ms.Parameter(tensor(shape[1]) * 0, "m"), ms.Parameter(tensor(shape[1]) ** 2, "v")
            elif kind == "pool":
                self.op = ops.MaxPool(kernel_size=3, strides=2, pad_mode="SAME")

        def construct(self, *args):
            if self.kind == "matmul":
                return _MATMUL_NT(args[0], args[1])
            if self.kind == "bn" and self.own:
                return self.op(args[0], args[1], args[2], self.mean, self.var, self.config)[0]
            if self.kind == "bn":
                return self.op(args[0], args[1], args[2], self.mean, self.var)[0]
            if self.kind == "pool":
                return self.op(args[0])
            if self.own:
                return self.op(args[0], args[1], self.config)
            return self.op(args[0], args[1])

    class Grad(nn.Cell):
        def __init__(self, net):
            super().__init__()
            self.net, self.grad = net, ops.GradOperation(get_all=True, sens_param=True)

        def construct(self, *args):
            return self.grad(self.net)(*args)

    if own_kernels and not kernels.kernels_active():
        raise SystemExit(f"the kernels side needs mindresnet's kernels: {kernels.status()}")
    results = {"side": f"{isa_report()}; {kernels.status()}; {threads} kernel threads"}
    for name in names:
        kind, shape = OPS[name]
        if kind == "conv":
            n, c, h, w, o, k, s = shape
            inputs = [tensor(n, c, h, w), tensor(o, c, k, k)]
        elif kind == "matmul":
            m, k, n = shape
            inputs = [tensor(m, k), tensor(n, k)]
        elif kind == "bn":
            inputs = [tensor(*shape), tensor(shape[1]), tensor(shape[1])]
        else:
            inputs = [tensor(*shape)]
        net = Op(kind, shape)
        out = net(*inputs)
        sens = ms.Tensor(rng.standard_normal(out.shape).astype(np.float32))
        grad = Grad(net)
        results[name] = {"fwd": median_ms(lambda: net(*inputs).asnumpy(), repeats),
                         "fwd+bwd": median_ms(lambda: [g.asnumpy() for g in grad(*inputs, sens)], repeats)}
    return results


def torch_child(names: List[str], repeats: int, threads: int) -> Dict[str, Dict]:
    import torch
    import torch.nn.functional as F

    from sides import torch_side

    torch.set_num_threads(threads)
    results = {"side": torch_side()}
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape, grad=True):
        return torch.randn(*shape, generator=generator).requires_grad_(grad)

    for name in names:
        kind, shape = OPS[name]
        if kind == "conv":
            n, c, h, w, o, k, s = shape
            inputs = [tensor(n, c, h, w), tensor(o, c, k, k)]
            fn = lambda x, wt: F.conv2d(x, wt, stride=s, padding=k // 2)  # noqa: E731
        elif kind == "matmul":
            m, k, n = shape
            inputs = [tensor(m, k), tensor(n, k)]
            fn = lambda x, wt: x @ wt.t()  # noqa: E731
        elif kind == "bn":
            inputs = [tensor(*shape), tensor(shape[1]), tensor(shape[1])]
            mean, var = torch.zeros(shape[1]), torch.ones(shape[1])
            fn = lambda x, g, b: F.batch_norm(x, mean, var, g, b, training=True)  # noqa: E731
        else:
            inputs = [tensor(*shape)]
            fn = lambda x: F.max_pool2d(x, 3, 2, padding=1)  # noqa: E731
        sens = torch.randn_like(fn(*inputs))

        def forward():
            with torch.no_grad():
                fn(*inputs)

        def both():
            torch.autograd.grad(fn(*inputs), inputs, sens)

        results[name] = {"fwd": median_ms(forward, repeats), "fwd+bwd": median_ms(both, repeats)}
    return results


def spawn(side: str, names: List[str], repeats: int, threads: int, python: str) -> Dict:
    if side == "pytorch":
        env = torch_env()
    elif side == "kernels":
        env = dict(torch_env(), GLOG_v="3")
    else:
        env = dict(torch_env(), ONEDNN_MAX_CPU_ISA=side, GLOG_v="3", MINDRESNET_CPU_KERNELS="0")
        if side.upper() == "ALL":
            names = [n for n in names if OPS[n][0] != "conv"]
    command = [python, str(Path(__file__).resolve()), "--child", side, "--repeats", str(repeats), "--threads",
               str(threads), "--ops", *names]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"{side} side failed: {(proc.stderr or proc.stdout)[-1500:]}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--caps", nargs="+", default=["kernels", "AVX2"],
                        help="MindSpore sides: 'kernels' (mindresnet's CPU kernels) and/or oneDNN ISA caps")
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=list(OPS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=cpu_count(), help="threads of each side (default: all cores)")
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child == "pytorch":
            result = torch_child(args.ops, args.repeats, args.threads)
        else:
            result = mindspore_child(args.ops, args.repeats, args.threads, own_kernels=args.child == "kernels")
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    sides = [*args.caps, "pytorch"]
    load_before = "%.2f %.2f %.2f" % os.getloadavg()
    rounds: Dict[str, List[Dict]] = {side: [] for side in sides}
    for index in range(args.rounds):
        for side in sides:
            python = args.torch_python if side == "pytorch" else sys.executable
            rounds[side].append(spawn(side, args.ops, args.repeats, args.threads, python))
            print(f"round {index + 1}: {side} done", file=sys.stderr, flush=True)
    print(f"{cpu_line()}; load average {load_before} before, {'%.2f %.2f %.2f' % os.getloadavg()} after")
    for side in sides:
        print(f"- {side if side in ('pytorch', 'kernels') else 'MindSpore ' + side}: {rounds[side][0]['side']}")
    header = " | ".join(f"{side} fwd | {side} fwd+bwd" for side in sides)
    print(f"\nms per call (wall / CPU of all threads), median of {args.rounds} rounds x {args.repeats} calls, "
          f"{args.threads} thread(s) a side\n\n| op | shape | {header} |")
    print("|---|---|" + "---:|" * (2 * len(sides)))
    table = {}
    for name in args.ops:
        cells = []
        for side in sides:
            for phase in ("fwd", "fwd+bwd"):
                found = [r[name][phase] for r in rounds[side] if name in r]
                value = {k: statistics.median(v[k] for v in found) for k in ("wall", "cpu")} if found else None
                table.setdefault(name, {})[f"{side} {phase}"] = value
                cells.append(f"{value['wall']:.1f} / {value['cpu']:.1f}" if value else "-")
        print(f"| {name} | {OPS[name][1]} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"cpu": cpu_line(), "rounds": rounds, "table": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
