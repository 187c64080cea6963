"""The PyTorch twin of ``python -m mindresnet.predict FOLDER --batch-size B`` (benchmark only).

Usage:
    python bench/predict_folder_torch.py FOLDER --ckpt model.pt [--batch-size 32] [--topk 5]

Does what mindresnet.predict does with a folder: walks it recursively (sorted), keeps the files
PIL recognises as images, decodes and preprocesses each like mindresnet (``predict_torch.preprocess``),
runs ``--batch-size`` images per forward pass of the same network (``torch_resnet``), softmax,
top-k. One untimed forward pass of the first batch warms the kernels up first, as on the
mindresnet side. Prints one JSON object: the side's description, images, seconds, and each
image's top class and probability.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_torch import preprocess  # noqa: E402
from sides import torch_side  # noqa: E402
from torch_resnet import create_model  # noqa: E402


def find_images(folder: str) -> List[str]:
    """Files under ``folder`` (recursively, sorted) whose content PIL recognises."""
    found = []
    for path in sorted(Path(root) / name for root, _, names in os.walk(folder) for name in names):
        try:
            with Image.open(path):
                found.append(str(path))
        except (UnidentifiedImageError, OSError):
            pass
    return found


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args(argv)
    side = torch_side()  # before any other convolution: it reads oneDNN's one-time verbose header
    saved = torch.load(args.ckpt, weights_only=True)
    meta = saved["meta"]
    net = create_model(meta["arch"], meta["num_classes"], meta["stem"])
    net.load_state_dict(saved["state_dict"])
    net.eval()

    def forward(paths: List[str]) -> np.ndarray:
        batch = torch.stack([preprocess(p, meta["image_size"], meta["mean"], meta["std"]) for p in paths])
        with torch.inference_mode():
            return torch.softmax(net(batch), dim=1).numpy()

    forward(find_images(args.folder)[:args.batch_size])  # warm-up, untimed
    start = time.perf_counter()
    paths = find_images(args.folder)
    top = []
    for first in range(0, len(paths), args.batch_size):
        probs = forward(paths[first:first + args.batch_size])
        for row in probs:
            order = np.argsort(-row, kind="stable")[:args.topk]
            top.append([(meta["class_names"][i], float(row[i])) for i in order])
    seconds = time.perf_counter() - start
    print(json.dumps({"side": side, "images": len(paths), "seconds": seconds,
                      "top1": {path: entry[0] for path, entry in zip(paths, top)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
