"""Rebuild a trained model from its checkpoint, and the pieces every post-training CLI shares.

Training stores metadata in the checkpoint (arch, num_classes, stem, image_size, mean, std,
class_names, dataset), so :func:`load_trained_model` needs only the file. Checkpoints from
elsewhere carry none: then ``arch`` and ``num_classes`` (``--arch``/``--num-classes``) are required.
``evaluate``, ``visualize``, ``predict`` and ``export`` build their command lines from
:func:`add_model_args` / :func:`add_data_args` and run them through :func:`run_cli`.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import mindspore as ms

from mindresnet.checkpoint import CheckpointError, read_checkpoint
from mindresnet.models import ResNet, create_model
from mindresnet.models.pretrained import STEM_CONV, load_weights
from mindresnet.runtime import DEVICES, DeviceError, setup_context

PathLike = Union[str, os.PathLike]
# Parameters built inside it stay uninitialised until loaded (MindSpore 2.10; deprecated there).
_no_random_init = getattr(ms.nn.utils, "no_init_parameters", contextlib.nullcontext)

DEFAULT_CKPT = "ckpt/resnet50-best.ckpt"  # where the default `python -m mindresnet.train` run puts it
DEFAULT_DATA_DIR = "datasets-cifar10-bin"
CLASS_INDICES_FILE = "class_indices.json"
HEAD_WEIGHT = "fc.weight"


def load_trained_model(ckpt: PathLike, arch: Optional[str] = None, num_classes: Optional[int] = None,
                       stem: Optional[str] = None, image_size: Optional[int] = None,
                       class_indices: Optional[PathLike] = None) -> Tuple[ResNet, Dict[str, Any]]:
    """Build the network a checkpoint was trained as and load its weights, in inference mode.

    Args:
        ckpt: a ``.ckpt`` file, ideally written by ``mindresnet.train``.
        arch: model name; required when the checkpoint has no metadata, else must agree with it.
        num_classes: head size; same rule as ``arch``.
        stem: ``imagenet`` or ``cifar``; default: the metadata's, else read off the stem conv.
        image_size: input side used for preprocessing; default: the metadata's (else 32 for the
            cifar stem, 224 for the imagenet stem).
        class_indices: a ``class_indices.json`` whose names win over the metadata's; without
            it, the metadata's names, else ``class_indices.json`` beside the checkpoint.

    Returns:
        ``(net, meta)``: ``meta`` holds the resolved arch, num_classes, stem, image_size, mean,
        std, class_names, dataset, plus whatever else the checkpoint stored, and
        ``class_names_from`` (``"metadata"``, the class index file, or None for generic
        ``class_<i>`` names).

    Raises:
        CheckpointError: unreadable file, no metadata and no ``arch``/``num_classes``, a flag that
            contradicts the metadata, or weights of another architecture or class count (the
            message names the file).
        DataError: a class index file is unreadable.
    """
    path = Path(ckpt)
    params, stored = read_checkpoint(path)
    meta = _resolve_metadata(path, params, stored, arch, num_classes, stem, image_size, class_indices)
    with _no_random_init():  # every parameter comes from the file: skip the He init (0.6 s, ResNet-50)
        net = create_model(meta["arch"], num_classes=meta["num_classes"], stem=meta["stem"])
    try:
        report = load_weights(net, path, params)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (built {_describe(meta)}{_source_hint(stored)})") from exc
    if report.skipped_head:
        found = tuple(params[HEAD_WEIGHT].shape) if HEAD_WEIGHT in params else "none"
        raise CheckpointError(
            f"Checkpoint {path} has a classifier head of shape {found}, but the model was built for "
            f"{meta['num_classes']} classes{_source_hint(stored)}. Pass the --num-classes the checkpoint was "
            "trained with, or the checkpoint that matches.")
    if report.skipped_stem:
        raise CheckpointError(f"Checkpoint {path} has a stem conv for the other stem than {meta['stem']!r}; "
                              "pass the --stem it was trained with.")
    net.set_train(False)
    return net, meta


def _resolve_metadata(path: Path, params: Dict[str, Any], stored: Dict[str, Any], arch: Optional[str],
                      num_classes: Optional[int], stem: Optional[str], image_size: Optional[int],
                      class_indices: Optional[PathLike]) -> Dict[str, Any]:
    if not stored and (arch is None or num_classes is None):
        raise CheckpointError(
            f"Checkpoint {path} has no mindresnet metadata (it was not written by mindresnet.train), so the "
            "model cannot be rebuilt from it alone: pass --arch (e.g. resnet18) and --num-classes (e.g. 10), "
            "and --stem/--image-size if they differ from the defaults.")
    meta = dict(stored)
    for key, flag, value in (("arch", "--arch", arch), ("num_classes", "--num-classes", num_classes),
                             ("stem", "--stem", stem)):
        if value is None:
            continue
        if key in stored and stored[key] != value:
            raise CheckpointError(
                f"{flag} {value} contradicts checkpoint {path}, which was trained with {key}={stored[key]!r} "
                f"(from its metadata). Drop {flag}, or pass a checkpoint trained with {key}={value!r}.")
        meta[key] = value
    if "stem" not in meta:
        conv = params.get(STEM_CONV)
        meta["stem"] = "cifar" if conv is not None and conv.shape[-1] == 3 else "imagenet"
    if image_size is not None:
        meta["image_size"] = int(image_size)
    meta.setdefault("image_size", 32 if meta["stem"] == "cifar" else 224)
    if "mean" not in meta or "std" not in meta:
        from mindresnet import data

        cifar = meta.get("dataset", "cifar10" if meta["image_size"] <= 32 else "folder") == "cifar10"
        meta["mean"] = list(data.CIFAR10_MEAN if cifar else data.IMAGENET_MEAN)
        meta["std"] = list(data.CIFAR10_STD if cifar else data.IMAGENET_STD)
    meta["class_names"], meta["class_names_from"] = _class_names(path, meta, class_indices)
    return meta


def _class_names(path: Path, meta: Dict[str, Any], class_indices: Optional[PathLike]
                 ) -> Tuple[List[str], Optional[str]]:
    """(class names, where they came from); generic ``class_<i>`` names and None when nowhere."""
    from mindresnet.data import read_class_indices

    beside = path.parent / CLASS_INDICES_FILE
    if class_indices is not None:
        names, source = read_class_indices(class_indices), f"--class-indices {class_indices}"
    elif meta.get("class_names"):
        names, source = [str(name) for name in meta["class_names"]], "metadata"
    elif beside.is_file():
        names, source = read_class_indices(beside), str(beside)
    else:
        return [f"class_{index}" for index in range(meta["num_classes"])], None
    if len(names) != meta["num_classes"]:
        raise CheckpointError(f"{source} lists {len(names)} class names but checkpoint {path} has "
                              f"{meta['num_classes']} classes. Pass the class index file of its training run.")
    return names, source


def _describe(meta: Dict[str, Any]) -> str:
    return f"{meta['arch']}, {meta['num_classes']} classes, {meta['stem']} stem"


def _source_hint(stored: Dict[str, Any]) -> str:
    return " from its metadata" if stored else " from --arch/--num-classes/--stem"


def build_eval_dataset(meta: Dict[str, Any], data_dir: PathLike, batch_size: int,
                       workers: Optional[int] = None, dataset: Optional[str] = None):
    """The held-out split the checkpoint's metadata points at, in file order (no shuffle, no augmentation).

    Args:
        meta: from :func:`load_trained_model`.
        data_dir: CIFAR-10 folder, or image-folder root holding ``val/``.
        batch_size: images per batch.
        workers: pipeline workers (default: the cores).
        dataset: ``cifar10`` (test split) or ``folder`` (val split); default: ``meta["dataset"]``,
            else ``cifar10``.

    Returns:
        ``(dataset, class_names)``.

    Raises:
        DataError: missing or malformed data; classes that differ from the checkpoint's.
    """
    from mindresnet import data

    kind = dataset or meta.get("dataset") or "cifar10"
    common = dict(image_size=meta["image_size"], batch_size=batch_size, workers=workers, augment=False,
                  shuffle=False, drop_remainder=False)
    if kind == "cifar10":
        pipeline, names = data.create_dataset_cifar10(data_dir, "test", download=False, **common)
    elif kind == "folder":
        pipeline, names = data.create_dataset_folder(data_dir, "val", **common)
    else:
        raise ValueError(f"--dataset must be cifar10 or folder, got {kind!r}")
    names = list(names)
    if len(names) != meta["num_classes"]:
        raise data.DataError(f"{data_dir} has {len(names)} classes, the checkpoint {meta['num_classes']}. "
                             "Pass the data the checkpoint was trained on.")
    if meta.get("class_names_from") and names != list(meta["class_names"]):
        raise data.DataError(
            f"{data_dir} has classes {', '.join(names)}, but the checkpoint's ({meta['class_names_from']}) are "
            f"{', '.join(meta['class_names'])}. Pass the data the checkpoint was trained on.")
    return pipeline, names


def add_model_args(parser: argparse.ArgumentParser, ckpt_default: Optional[str] = None) -> None:
    """``--ckpt``, ``--device`` and the overrides for checkpoints without metadata."""
    parser.add_argument("--ckpt", default=ckpt_default, required=ckpt_default is None,
                        help="checkpoint written by mindresnet.train" +
                             (f" (default: {ckpt_default})" if ckpt_default else ""))
    parser.add_argument("--device", default="CPU", choices=DEVICES, type=_device_name,
                        help="device to run on (default: CPU)")
    group = parser.add_argument_group("model (read from the checkpoint's metadata; needed only without it)")
    group.add_argument("--arch", help="model name, e.g. resnet18")
    group.add_argument("--num-classes", type=int, help="classes of the head")
    group.add_argument("--stem", choices=("imagenet", "cifar"), help="stem the model was trained with")
    group.add_argument("--image-size", type=int, help="input side in pixels")
    group.add_argument("--class-indices", help=f"{CLASS_INDICES_FILE} with the class names "
                                               "(default: metadata, else the file beside --ckpt)")


def add_data_args(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """``--data-dir``, ``--dataset``, ``--batch-size`` and ``--workers`` of the tools that read a dataset."""
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"CIFAR-10 folder or image-folder root (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--dataset", choices=("cifar10", "folder"),
                        help="cifar10 (test split) or folder (val split); default: the checkpoint's")
    parser.add_argument("--batch-size", type=_positive_int, default=batch_size,
                        help=f"images per batch (default: {batch_size})")
    parser.add_argument("--workers", type=_positive_int, help="data pipeline workers (default: the cores)")


def model_from_args(args: argparse.Namespace, mode: str = "graph") -> Tuple[ResNet, Dict[str, Any]]:
    """Set up the MindSpore context for ``--device`` and load ``--ckpt``.

    ``mode``: ``graph`` for many batches (evaluate, visualize, export); ``pynative`` for a few
    images (predict), where compiling the graph would cost more than it saves.
    """
    setup_context(args.device, mode=mode)
    return load_trained_model(args.ckpt, arch=args.arch, num_classes=args.num_classes, stem=args.stem,
                              image_size=args.image_size, class_indices=args.class_indices)


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
            argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and call ``run``; a user error prints ``error: ...`` to stderr and returns 1.

    Returns:
        The exit code: ``run``'s, 1 on a user error, 2 on bad flags, 130 on Ctrl-C.
    """
    from mindresnet.data import DataError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return int(exc.code or 0)
    try:
        return run(args)
    except (CheckpointError, DataError, DeviceError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _device_name(text: str) -> str:
    from mindresnet.runtime import normalize_device

    try:
        return normalize_device(text)
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
