"""Classify image files with a trained checkpoint and print each class's probability.

``python -m mindresnet.predict cat.jpg dog.png --ckpt ckpt/resnet50-best.ckpt`` preprocesses any
JPEG/PNG (any size; RGBA, grayscale and palette images are converted to RGB) exactly as the model
was trained (metadata image_size, mean, std) and prints the top-k classes, most likely first.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from mindresnet import engine
from mindresnet.inference import DEFAULT_CKPT, add_model_args, model_from_args, run_cli
from mindresnet.errors import ImageError

PathLike = Union[str, os.PathLike]
CHUNK = 32  # images per forward pass


def load_image(path: PathLike):
    """Open and decode ``path`` with PIL.

    Raises:
        ImageError: the file does not exist or is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"Image {path} does not exist. Check the path.")
    try:
        image = Image.open(path)
        image.load()  # decode now, so a truncated file fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path} is not a readable image ({exc}). Pass a JPEG or PNG file.") from exc
    return image


def preprocess_files(paths: Sequence[PathLike], meta: Dict[str, Any]) -> np.ndarray:
    """Load ``paths`` and turn them into a normalised N x 3 x S x S float32 batch as in training."""
    from mindresnet.data import preprocess_image

    return np.stack([preprocess_image(load_image(path), meta["image_size"], meta["mean"], meta["std"])
                     for path in paths])


def predict_images(net, meta: Dict[str, Any], paths: Sequence[PathLike], topk: Optional[int] = 5
                   ) -> List[Dict[str, Any]]:
    """Class probabilities of each image.

    Args:
        net: the network from :func:`mindresnet.inference.load_trained_model`.
        meta: its metadata (image_size, mean, std, class_names).
        paths: image files.
        topk: classes to keep per image, most likely first; None or 0 keeps all.

    Returns:
        One dict per image: ``{"path", "top": [{"class", "index", "probability"}, ...]}``.

    Raises:
        ImageError: a file is missing or not an image (checked before any inference).
    """
    import mindspore as ms

    if not paths:
        raise ImageError("No image given. Pass one or more JPEG/PNG paths.")
    batch = preprocess_files(paths, meta)
    net.set_train(False)
    probs = np.concatenate([engine.softmax(net(ms.Tensor(batch[start:start + CHUNK])).asnumpy())
                            for start in range(0, len(batch), CHUNK)])
    names = meta["class_names"]
    keep = len(names) if not topk else min(int(topk), len(names))
    results = []
    for path, row in zip(paths, probs):
        order = np.argsort(-row, kind="stable")[:keep]
        results.append({"path": str(path), "top": [{"class": names[i], "index": int(i),
                                                    "probability": float(row[i])} for i in order]})
    return results


def format_predictions(results: List[Dict[str, Any]]) -> str:
    """Human-readable: each path, then one ``class  probability`` line per kept class."""
    lines = []
    for result in results:
        width = max(len(entry["class"]) for entry in result["top"])
        lines.append(result["path"])
        lines += [f"  {entry['class']:<{width}}  {entry['probability']:.4f}" for entry in result["top"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mindresnet.predict`` command line."""
    parser = argparse.ArgumentParser(prog="python -m mindresnet.predict", description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG/PNG files to classify")
    add_model_args(parser, ckpt_default=DEFAULT_CKPT)
    parser.add_argument("--topk", type=int, default=5, help="classes to print per image; 0 prints all (default: 5)")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON on stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    """Predict ``args.images`` with ``args.ckpt`` and print the result."""
    if args.topk < 0:
        raise ValueError(f"--topk must be >= 0, got {args.topk}")
    for path in args.images:  # fail on a bad path before spending seconds on loading the model
        load_image(path).close()
    net, meta = model_from_args(args, mode="pynative")  # a few images do not repay a graph compile
    results = predict_images(net, meta, args.images, args.topk)
    if args.json:
        print(json.dumps({"checkpoint": str(args.ckpt), "predictions": results}))
    else:
        print(format_predictions(results))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
