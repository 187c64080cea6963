"""Flags shared by the command-line tools (their values' parsers: :mod:`mindresnet.parsing`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Tuple

from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.data.constants import CLASS_INDICES_FILE
from mindresnet.data.factory import DATASETS
from mindresnet.errors import ConfigError, DeviceError
from mindresnet.models import CONVENTIONS, load_model, parse_pretrained
from mindresnet.models.resnet import STEMS
from mindresnet.parsing import positive_int
from mindresnet.runtime import DEVICES, normalize_device, setup_context

DEFAULT_CKPT = "ckpt/resnet50-best.ckpt"  # where the default `python -m mindresnet.train` run puts it
DEFAULT_DATA_DIR = "datasets-cifar10-bin"


def device_name(text: str) -> str:
    """MindSpore's spelling of a device name given in any case."""
    try:
        return normalize_device(text)
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_model_args(parser: argparse.ArgumentParser, ckpt_default: Optional[str] = None,
                   pretrained: bool = False) -> None:
    """``--ckpt``, ``--device`` and the overrides for checkpoints without metadata.

    ``pretrained``: also offer ``--pretrained`` (published or foreign weights with their own head,
    instead of ``--ckpt``).
    """
    parser.add_argument("--ckpt", default=ckpt_default, required=ckpt_default is None,
                        help="checkpoint written by mindresnet.train" +
                             (f" (default: {ckpt_default})" if ckpt_default else ""))
    if pretrained:
        parser.add_argument("--pretrained", metavar="true|TAG|PATH",
                            help="instead of --ckpt: the published ImageNet weights of --arch (true or a tag), "
                                 "or a .ckpt/.pth/.pt/.safetensors file, with its own head and class names")
    parser.add_argument("--device", default="CPU", choices=DEVICES, type=device_name,
                        help="device to run on (default: CPU)")
    group = parser.add_argument_group("model (read from the checkpoint's metadata; needed only without it)")
    group.add_argument("--arch", help="model name, e.g. resnet18")
    group.add_argument("--num-classes", type=positive_int, help="classes of the head")
    group.add_argument("--stem", choices=STEMS, help="stem the model was trained with")
    group.add_argument("--convention", choices=tuple(CONVENTIONS),
                       help="padding/BatchNorm convention the weights were trained in "
                            "(default: detected from the parameter names)")
    group.add_argument("--image-size", type=positive_int, help="input side in pixels")
    group.add_argument("--class-indices", help=f"{CLASS_INDICES_FILE} with the class names "
                                               "(default: metadata, else the file beside --ckpt)")


def add_data_args(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """``--data-dir``, ``--dataset``, ``--batch-size`` and ``--workers`` of the tools that read a dataset."""
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"CIFAR-10 folder or image-folder root (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--dataset", choices=tuple(DATASETS),
                        help="which reader; its held-out split is used (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=f"images per batch (default: {batch_size})")
    parser.add_argument("--workers", type=positive_int, help="data pipeline workers (default: the cores)")


def model_from_args(args: argparse.Namespace, mode: str = "graph") -> Tuple[object, CheckpointMeta]:
    """Set up the MindSpore context for ``--device`` and load ``--pretrained``, else ``--ckpt``
    (:func:`mindresnet.models.load_model`, with the model flags).

    ``mode``: ``graph`` for many batches (evaluate, visualize, export); ``pynative`` for a few
    images (predict), where compiling the graph would cost more than it saves.
    """
    setup_context(args.device, mode=mode)
    weights = parse_pretrained(getattr(args, "pretrained", None), args.arch)
    if weights and not args.arch:
        raise ConfigError("--pretrained needs --arch (e.g. --arch resnet50).")
    return load_model(weights or Path(args.ckpt), arch=args.arch, num_classes=args.num_classes, stem=args.stem,
                      convention=args.convention, image_size=args.image_size, class_indices=args.class_indices)
