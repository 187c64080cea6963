"""Export a trained checkpoint for deployment: MINDIR (MindSpore Lite / serving), ONNX or AIR.

``python -m mindresnet.export --ckpt ckpt/resnet50-best.ckpt --format MINDIR`` writes
``ckpt/resnet50-best.mindir`` with a fixed input of ``--batch-size`` x 3 x image_size x image_size
(image_size from the checkpoint's metadata). On this MindSpore (2.10) MINDIR and ONNX export on
every backend; AIR needs the Ascend backend.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from mindresnet.fileio import atomic_path
from mindresnet.inference import DEFAULT_CKPT, add_model_args, model_from_args, run_cli
from mindresnet.errors import ExportError

PathLike = Union[str, os.PathLike]
EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
ASCEND_ONLY = ("AIR",)


def export_model(net, out: PathLike, file_format: str = "MINDIR", batch_size: int = 1, image_size: int = 32,
                 device: Optional[str] = None) -> Path:
    """Export ``net`` with a fixed input of ``batch_size`` x 3 x ``image_size`` x ``image_size``.

    Args:
        net: the network (switched to inference mode).
        out: output file; the format's extension is added when missing.
        file_format: ``MINDIR``, ``ONNX`` or ``AIR``.
        batch_size: batch dimension of the exported input.
        image_size: side of the exported input.
        device: the device target in use (default: MindSpore's), to reject AIR off Ascend early.

    Returns:
        The path written. It is exported under a temporary name in the same folder and renamed,
        so an interrupted export never leaves a partial file under ``out``.

    Raises:
        ExportError: unknown format, wrong extension, or the backend cannot export this format.
    """
    import mindspore as ms

    device = device or ms.get_context("device_target")
    file_format = check_format(file_format, device)
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
    dummy = ms.Tensor(np.zeros((batch_size, 3, image_size, image_size), np.float32))
    with atomic_path(out, ext) as tmp:
        base = str(tmp)[:-len(ext)]  # mindspore.export appends the extension itself
        try:
            ms.export(net, dummy, file_name=base, file_format=file_format)
        except (RuntimeError, ValueError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"MindSpore could not export {file_format} on {device}: {reason}. "
                              "Try --format MINDIR.") from exc
        if not tmp.is_file():
            raise ExportError(f"MindSpore reported no error but wrote no {file_format} file for {out}.")
        os.chmod(tmp, 0o644)  # mindspore writes its exports read-only (0400)
    return out


def check_format(file_format: str, device: str) -> str:
    """``file_format`` upper-cased, or ExportError when unknown or not producible on ``device``."""
    file_format = file_format.upper()
    if file_format not in EXTENSIONS:
        raise ExportError(f"--format {file_format} is not one of {', '.join(EXTENSIONS)}.")
    if file_format in ASCEND_ONLY and device != "Ascend":
        raise ExportError(f"--format {file_format} needs the Ascend backend; MindSpore cannot write it on "
                          f"{device}. Use --format MINDIR (or ONNX) here, or export on an Ascend machine.")
    return file_format


def default_output(ckpt: PathLike, file_format: str) -> Path:
    """``<checkpoint folder>/<checkpoint name>.<format extension>``."""
    ckpt = Path(ckpt)
    return ckpt.with_name(ckpt.stem + EXTENSIONS.get(file_format.upper(), ""))


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mindresnet.export`` command line."""
    parser = argparse.ArgumentParser(prog="python -m mindresnet.export", description=__doc__.split("\n")[0])
    add_model_args(parser, ckpt_default=DEFAULT_CKPT)
    parser.add_argument("--format", default="MINDIR", type=str.upper, choices=tuple(EXTENSIONS),
                        help="MINDIR (default), ONNX or AIR (Ascend only)")
    parser.add_argument("--out", help="output file (default: the checkpoint's path with the format's extension)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch dimension of the exported input (default: 1)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Export ``args.ckpt`` in ``args.format``."""
    check_format(args.format, args.device)  # before the seconds spent loading the model
    net, meta = model_from_args(args)
    out = export_model(net, args.out or default_output(args.ckpt, args.format), args.format, args.batch_size,
                       meta["image_size"], device=args.device)
    print(f"exported {meta['arch']} ({args.batch_size}x3x{meta['image_size']}x{meta['image_size']}) to {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
