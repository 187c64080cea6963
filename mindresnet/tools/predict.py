"""Classify image files and folders with a trained checkpoint.

``python -m mindresnet.predict cat.jpg photos/ --ckpt ckpt/resnet50-best.ckpt`` takes files and
folders (searched recursively; a file counts as an image when PIL recognises its content, whatever
its name), preprocesses each image as evaluation does (the checkpoint's
:class:`~mindresnet.data.preprocess.Preprocess`; RGBA, grayscale and palette images are converted to RGB), runs ``--batch-size`` images per
forward pass and prints the top-k classes, most likely first; ``--csv FILE`` and ``--json`` give
one row per image. Files in folders that are not images are listed as skipped. An image that
cannot be decoded (a file with an image format's signature counts as one) is reported and the others
are still predicted; the exit code is then 3.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.cli import run_cli
from mindresnet.cli.args import DEFAULT_CKPT, add_model_args, model_from_args
from mindresnet.errors import ConfigError, ImageError
from mindresnet.fileio import PathLike, write_text
from mindresnet.kernels import frozen_weights
from mindresnet.metrics import softmax
from mindresnet.parsing import positive_int

DEFAULT_BATCH_SIZE = 32  # images per forward pass
EXIT_SOME_FAILED = 3  # some images could not be read; the others were predicted
DECODE_ERRORS = (OSError, SyntaxError, ValueError)  # what PIL raises on unreadable files (OSError covers
# UnidentifiedImageError and truncated data)
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
              b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}  # leading bytes of image formats (WebP: RIFF....WEBP)


@dataclass
class ImageInputs:
    """What the command-line paths hold.

    ``images``: files PIL recognises as images, in the order given (folders sorted, recursively).
    ``skipped``: ``(path, reason)`` of files found in folders that are not images.
    ``failed``: ``(path, reason)`` of files named on the command line that are not images, and of
    files that carry an image format's signature but cannot be read (broken images).
    """

    images: List[Path] = field(default_factory=list)
    skipped: List[Tuple[Path, str]] = field(default_factory=list)
    failed: List[Tuple[Path, str]] = field(default_factory=list)


def not_an_image(path: Path) -> Optional[str]:
    """Why ``path`` is not an image (PIL cannot identify its content), or None when it is one.

    Reads the header only: a file whose pixels are corrupt passes here and fails when decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return None
    except UnidentifiedImageError:
        kind = image_signature(path)
        if kind:
            return f"a corrupt {kind} image (it starts with the {kind} signature, but PIL cannot read it)"
        return "not an image (PIL does not recognise its content)"
    except DECODE_ERRORS as exc:
        return f"not a readable image ({exc})"


def image_signature(path: Path) -> Optional[str]:
    """The image format whose signature ``path`` starts with (``PNG``, ``JPEG``...), or None."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def find_images(paths: Sequence[PathLike]) -> ImageInputs:
    """Sort the files and folders in ``paths`` into images, skipped files and unreadable named files.

    Raises:
        ImageError: a path does not exist.
    """
    found = ImageInputs()
    seen = set()
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(Path(root) / name for root, _, names in os.walk(given) for name in names)
        elif given.is_file():
            files = [given]
        else:
            raise ImageError(f"{given} does not exist. Check the path.")
        for path in files:
            try:
                resolved = path.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                found.skipped.append((path, "a symlink loop"))
                continue
            if resolved in seen:
                continue
            seen.add(resolved)
            reason = not_an_image(path)
            if reason is None:
                found.images.append(path)
            else:
                broken = path == given or image_signature(path) is not None
                (found.failed if broken else found.skipped).append((path, reason))
    return found


def load_image(path: PathLike):
    """Open and decode ``path`` with PIL.

    Raises:
        ImageError: the file does not exist or is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"Image {path} does not exist. Check the path.")
    try:
        return _decode(path)
    except DECODE_ERRORS as exc:
        raise ImageError(f"{path} is not a readable image ({exc}). Pass a JPEG or PNG file.") from exc


def _decode(path: Path):
    from PIL import Image

    image = Image.open(path)
    image.load()  # decode now, so a truncated file fails here
    return image


def preprocess_files(paths: Sequence[PathLike], meta: CheckpointMeta) -> np.ndarray:
    """Load ``paths`` and turn them into a normalised N x 3 x S x S float32 batch by ``meta.preprocess``."""
    return np.stack([meta.preprocess.apply(load_image(path)) for path in paths])


def iter_predictions(net, meta: CheckpointMeta, paths: Sequence[PathLike], topk: Optional[int] = 5,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[Dict[str, Any]]:
    """Class probabilities of each image, ``batch_size`` images per forward pass, in the order of ``paths``.

    Args:
        net: the network from :func:`mindresnet.tools.eval_data.load_trained_model`.
        meta: its metadata (preprocess, class_names).
        paths: image files.
        topk: classes to keep per image, most likely first; None or 0 keeps all.
        batch_size: images per forward pass.

    Yields:
        One dict per image: ``{"path", "top": [{"class", "index", "probability"}, ...]}``, or
        ``{"path", "error"}`` for an image that cannot be decoded (the others are still predicted).
    """
    import mindspore as ms

    names = meta.class_names
    keep = len(names) if not topk else min(int(topk), len(names))
    net.set_train(False)
    for start in range(0, len(paths), batch_size):
        rows: List[Dict[str, Any]] = []
        arrays = []
        for path in paths[start:start + batch_size]:
            try:
                image = _decode(Path(path))
            except DECODE_ERRORS as exc:
                rows.append({"path": str(path), "error": f"not a readable image ({exc})"})
                continue
            with image:
                arrays.append(meta.preprocess.apply(image))
            rows.append({"path": str(path)})
        probs = iter(softmax(net(ms.Tensor(np.stack(arrays))).asnumpy()) if arrays else [])
        for row in rows:
            if "error" not in row:
                prob = next(probs)
                row["top"] = [{"class": names[i], "index": int(i), "probability": float(prob[i])}
                              for i in np.argsort(-prob, kind="stable")[:keep]]
            yield row


def predict_images(net, meta: CheckpointMeta, paths: Sequence[PathLike], topk: Optional[int] = 5,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> List[Dict[str, Any]]:
    """:func:`iter_predictions` as a list.

    Raises:
        ImageError: ``paths`` is empty.
    """
    if not paths:
        raise ImageError("No image given. Pass one or more JPEG/PNG paths or folders.")
    with frozen_weights():  # the weights cannot change until the list is complete
        return list(iter_predictions(net, meta, paths, topk, batch_size))


def format_predictions(results: List[Dict[str, Any]]) -> str:
    """Human-readable: each predicted path, then one ``class  probability`` line per kept class."""
    lines = []
    for result in results:
        if "top" not in result:
            continue
        width = max(len(entry["class"]) for entry in result["top"])
        lines.append(result["path"])
        lines += [f"  {entry['class']:<{width}}  {entry['probability']:.4f}" for entry in result["top"]]
    return "\n".join(lines)


def predictions_csv(results: List[Dict[str, Any]]) -> str:
    """One row per image: path, ``class_1, probability_1, ... class_k, probability_k``, error (empty if none)."""
    keep = max((len(result.get("top", ())) for result in results), default=0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path"] + [f"{kind}_{rank}" for rank in range(1, keep + 1)
                                for kind in ("class", "probability")] + ["error"])
    for result in results:
        cells = [cell for entry in result.get("top", ()) for cell in (entry["class"], f"{entry['probability']:.6f}")]
        writer.writerow([result["path"]] + cells + [""] * (2 * keep - len(cells)) + [result.get("error", "")])
    return out.getvalue()


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mindresnet.predict`` command line."""
    parser = argparse.ArgumentParser(prog="python -m mindresnet.predict", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="image files, or folders searched recursively for images")
    add_model_args(parser, ckpt_default=DEFAULT_CKPT, pretrained=True)
    parser.add_argument("--topk", type=int, default=5, help="classes to print per image; 0 prints all (default: 5)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per forward pass (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--csv", metavar="FILE", help="write one row per image to FILE (CSV)")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON on stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    """Predict the images in ``args.paths`` with ``args.ckpt`` and report them.

    Returns:
        0, or :data:`EXIT_SOME_FAILED` when some images could not be read.
    """
    if args.topk < 0:
        raise ConfigError(f"--topk must be >= 0, got {args.topk}")
    inputs = find_images(args.paths)  # before spending seconds on loading the model
    if not inputs.images:
        reasons = [f"{path} is {reason}" for path, reason in inputs.failed]
        if inputs.skipped:
            reasons.append(f"{len(inputs.skipped)} file(s) in folders are not images")
        raise ImageError(f"No image to predict in {', '.join(args.paths)}" + (f": {'; '.join(reasons)}" if reasons
                         else "") + ". Pass JPEG or PNG files, or folders of them.")
    for path, reason in inputs.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    net, meta = model_from_args(args, mode="pynative")  # batches of varied size: no graph compile per size
    results = predict_images(net, meta, inputs.images, args.topk, args.batch_size)
    results += [{"path": str(path), "error": reason} for path, reason in inputs.failed]
    failed = [result for result in results if "error" in result]
    for result in failed:
        print(f"failed {result['path']}: {result['error']}", file=sys.stderr)
    if args.csv:
        write_text(args.csv, predictions_csv(results))
    if args.json:
        print(json.dumps({"checkpoint": str(args.pretrained or args.ckpt), "predictions": results,
                          "skipped": [{"path": str(path), "reason": reason} for path, reason in inputs.skipped]}))
    elif args.csv:
        print(f"wrote {len(results)} rows to {args.csv}: {len(results) - len(failed)} predicted, {len(failed)} failed")
    else:
        print(format_predictions(results))
    if failed:
        print(f"{len(failed)} of {len(results)} images could not be read (listed above): exit code "
              f"{EXIT_SOME_FAILED}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
