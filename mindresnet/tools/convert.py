"""Convert ResNet/ResNeXt weights from PyTorch, MindCV, mindspore/models or the tutorial into a mindresnet checkpoint.

``python -m mindresnet.convert resnet50.pth resnet50.ckpt`` writes a ``.ckpt`` under mindresnet's
parameter names with a :class:`~mindresnet.checkpoint_meta.CheckpointMeta` recording the
architecture (inferred from the weights' shapes unless ``--arch``), head size, stem and the
convention the weights were trained in, so every tool rebuilds the network that computes what the
publisher trained. A 1000- or 1001-class ImageNet head gets the ImageNet class names.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

from mindresnet import __version__
from mindresnet.checkpoint import save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.cli import run_cli
from mindresnet.fileio import PathLike
from mindresnet.models import CONVENTIONS, list_models, pretrained_model
from mindresnet.models.identify import infer_arch
from mindresnet.models.weight_files import SUFFIXES, read_weights


def convert(source: PathLike, out: PathLike, arch: Optional[str] = None,
            convention: Optional[str] = None) -> Tuple[Path, CheckpointMeta]:
    """Write the weights of ``source`` (``.pth``, ``.pt``, ``.safetensors`` or ``.ckpt``) as a mindresnet ``out``.

    Args:
        source: the weights file.
        out: the ``.ckpt`` to write (atomically).
        arch: the variant; default: inferred from the weights' shapes.
        convention: the convention the weights were trained in; default: detected (see
            :func:`mindresnet.models.create_model`).

    Returns:
        ``(path written, its metadata)``.

    Raises:
        CheckpointError: unreadable file, or weights of no registered architecture.
    """
    if arch is None:
        params, stored = read_weights(source)
        arch = stored.arch if stored is not None else infer_arch(params, source)
    net, meta = pretrained_model(arch, str(source), convention)
    meta = meta.replace(mindresnet=__version__)
    path = save_checkpoint(net, out, meta)
    return path, meta


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mindresnet.convert`` command line."""
    parser = argparse.ArgumentParser(prog="python -m mindresnet.convert", description=__doc__.split("\n")[0])
    parser.add_argument("source", help=f"weights file ({', '.join(SUFFIXES)})")
    parser.add_argument("out", help="the mindresnet .ckpt to write")
    parser.add_argument("--arch", choices=list_models(), help="architecture (default: inferred from the weights)")
    parser.add_argument("--convention", choices=tuple(CONVENTIONS),
                        help="padding/BatchNorm convention the weights were trained in (default: detected)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Convert ``args.source`` into ``args.out`` and say what was written."""
    path, meta = convert(args.source, args.out, args.arch, args.convention)
    print(f"wrote {path}: {meta.arch}, {meta.num_classes} classes, {meta.stem} stem, "
          f"{meta.convention} convention")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
