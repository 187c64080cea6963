"""Export a trained checkpoint for deployment: MINDIR (MindSpore / MindSpore Lite), ONNX or AIR.

``python -m mindresnet.export --ckpt ckpt/resnet50-best.ckpt --format MINDIR`` writes
``ckpt/resnet50-best.mindir`` with an input of ``--batch-size`` x 3 x image_size x image_size
(image_size from the checkpoint's metadata) and prints what a deployer must feed it: input
name, shape, dtype, resize and normalisation, and where the class names come from. On this
MindSpore (2.10) MINDIR and ONNX export on every backend; AIR needs the Ascend backend.
``--dynamic-batch`` leaves the batch dimension free; MindSpore writes that for MINDIR only.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.errors import ExportError
from mindresnet.fileio import PathLike, atomic_path
from mindresnet.cli import run_cli
from mindresnet.cli.args import DEFAULT_CKPT, add_model_args, model_from_args
from mindresnet.kernels import use_native_kernels

EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
ASCEND_ONLY = ("AIR",)
DYNAMIC_BATCH_FORMATS = ("MINDIR",)  # mindspore.export refuses a free dimension for ONNX (2.10)


def export_model(net, out: PathLike, file_format: str = "MINDIR", batch_size: int = 1, image_size: int = 32,
                 device: Optional[str] = None, dynamic_batch: bool = False) -> Path:
    """Export ``net`` with an input of ``batch_size`` x 3 x ``image_size`` x ``image_size``.

    Args:
        net: the network (switched to inference mode and to MindSpore's own convolution kernels).
        out: output file; the format's extension is added when missing.
        file_format: ``MINDIR``, ``ONNX`` or ``AIR``.
        batch_size: batch dimension of the exported input.
        image_size: side of the exported input.
        device: the device target in use (default: MindSpore's), to reject AIR off Ascend early.
        dynamic_batch: leave the batch dimension free (any batch size at inference; MINDIR only).

    Returns:
        The path written. It is exported under a temporary name in the same folder and renamed,
        so an interrupted export never leaves a partial file under ``out``.

    Raises:
        ExportError: unknown format, wrong extension, a dynamic batch the format cannot hold, or
            the backend cannot export this format.
    """
    import mindspore as ms

    device = device or ms.get_context("device_target")
    file_format = check_format(file_format, device, dynamic_batch)
    ext = EXTENSIONS[file_format]
    out = Path(out)
    if out.suffix.lower() != ext:
        if out.suffix.lower() in EXTENSIONS.values():
            raise ExportError(f"--out {out} has the extension of another format than {file_format}; "
                              f"name it *{ext} or change --format.")
        out = out.with_name(out.name + ext)
    if batch_size < 1 or image_size < 1:
        raise ExportError(f"--batch-size and the image size must be >= 1, got {batch_size} and {image_size}.")
    net.set_train(False)
    use_native_kernels(net)  # the file holds MindSpore's own Conv2D, whatever runs on this CPU
    if dynamic_batch:
        example = ms.Tensor(shape=[None, 3, image_size, image_size], dtype=ms.float32)
    else:
        example = ms.Tensor(np.zeros((batch_size, 3, image_size, image_size), np.float32))
    with atomic_path(out, ext) as tmp:
        base = str(tmp)[:-len(ext)]  # mindspore.export appends the extension itself
        folder_mode = tmp.parent.stat().st_mode & 0o7777
        try:
            ms.export(net, example, file_name=base, file_format=file_format)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ExportError(f"MindSpore could not export {file_format} on {device}: {first_line(exc)}. "
                              "Try --format MINDIR.") from exc
        finally:
            if tmp.parent.stat().st_mode & 0o7777 != folder_mode:
                os.chmod(tmp.parent, folder_mode)  # the ONNX writer chmods the output folder to 0700
        if not tmp.is_file():
            raise ExportError(f"MindSpore reported no error but wrote no {file_format} file for {out}.")
        os.chmod(tmp, 0o644)  # mindspore writes its exports read-only (0400)
    return out


def check_format(file_format: str, device: str, dynamic_batch: bool = False) -> str:
    """``file_format`` upper-cased, or ExportError when unknown or not producible on ``device``."""
    file_format = file_format.upper()
    if file_format not in EXTENSIONS:
        raise ExportError(f"--format {file_format} is not one of {', '.join(EXTENSIONS)}.")
    if file_format in ASCEND_ONLY and device != "Ascend":
        raise ExportError(f"--format {file_format} needs the Ascend backend; MindSpore cannot write it on "
                          f"{device}. Use --format MINDIR (or ONNX) here, or export on an Ascend machine.")
    if dynamic_batch and file_format not in DYNAMIC_BATCH_FORMATS:
        raise ExportError(f"--dynamic-batch is not possible with --format {file_format}: MindSpore's exporter "
                          "refuses a free input dimension there (\"Export ONNX format model not support dynamic "
                          "shape mode\"). Export one file per batch size with --batch-size N, or use --format "
                          "MINDIR, which keeps the batch free.")
    return file_format


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def default_output(ckpt: PathLike, file_format: str) -> Path:
    """``<checkpoint folder>/<checkpoint name>.<format extension>``."""
    ckpt = Path(ckpt)
    return ckpt.with_name(ckpt.stem + EXTENSIONS.get(file_format.upper(), ""))


def input_name(net) -> str:
    """The exported graph's input name: MindSpore names it after ``construct``'s argument."""
    return next(iter(inspect.signature(net.construct).parameters))


def deployment_contract(net, meta: CheckpointMeta, batch_size: int = 1, dynamic_batch: bool = False) -> str:
    """What a deployer must feed the exported model and what comes out, one fact per line."""
    preprocess = meta.preprocess
    size = preprocess.size
    batch = "N" if dynamic_batch else str(batch_size)
    names = meta.class_names
    source = {"metadata": "the checkpoint's metadata", None: "nowhere (generic class_<i> names)"}.get(
        meta.class_names_from, meta.class_names_from)
    shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
    return "\n".join([
        f"  input    {input_name(net)}: float32 [{batch}, 3, {size}, {size}] (NCHW, RGB)"
        + (", N any batch size" if dynamic_batch else ""),
        f"  resize   {preprocess.describe()}",
        "  scale    pixel / 255 (0-1), then (value - mean) / std per channel",
        f"  mean     {', '.join(f'{value:g}' for value in preprocess.mean)}",
        f"  std      {', '.join(f'{value:g}' for value in preprocess.std)}",
        f"  output   float32 [{batch}, {meta.num_classes}] logits (softmax gives probabilities)",
        f"  classes  from {source}: {shown}",
    ])


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mindresnet.export`` command line."""
    parser = argparse.ArgumentParser(prog="python -m mindresnet.export", description=__doc__.split("\n")[0])
    add_model_args(parser, ckpt_default=DEFAULT_CKPT)
    parser.add_argument("--format", default="MINDIR", type=str.upper, choices=tuple(EXTENSIONS),
                        help="MINDIR (default), ONNX or AIR (Ascend only)")
    parser.add_argument("--out", help="output file (default: the checkpoint's path with the format's extension)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch dimension of the exported input (default: 1)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="leave the batch dimension free (MINDIR only: MindSpore cannot write it for ONNX)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Export ``args.ckpt`` in ``args.format`` and print the input contract."""
    check_format(args.format, args.device, args.dynamic_batch)  # before the seconds spent loading the model
    net, meta = model_from_args(args)
    out = export_model(net, args.out or default_output(args.ckpt, args.format), args.format, args.batch_size,
                       meta.preprocess.size, device=args.device, dynamic_batch=args.dynamic_batch)
    print(f"exported {meta.arch} ({args.format}) to {out}")
    print(deployment_contract(net, meta, args.batch_size, args.dynamic_batch))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
