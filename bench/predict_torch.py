"""The PyTorch counterpart of ``python -m mindresnet.predict IMAGE --ckpt CKPT`` (benchmark only).

Usage:
    python bench/predict_torch.py IMAGE [IMAGE ...] --ckpt model.pt [--topk 5]

Loads a ``torch.save``'d ``{"state_dict", "meta"}`` (``bench/cold_start.py`` writes one from a
mindresnet checkpoint), preprocesses each image the way mindresnet does (RGB; plain resize at
32 pixels and below, else shorter side to size*256/224 and centre crop; mean/std from the
metadata), and prints each class's probability in mindresnet.predict's format.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_resnet import create_model  # noqa: E402


def preprocess(path: str, size: int, mean: List[float], std: List[float]) -> torch.Tensor:
    """One image file as a normalised 3 x size x size float tensor."""
    image = Image.open(path).convert("RGB")
    if size <= 32:
        image = image.resize((size, size), Image.BILINEAR)
    else:
        short = round(size * 256 / 224)
        scale = short / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        image = image.crop((left, top, left + size, top + size))
    array = (np.asarray(image, np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args(argv)
    saved = torch.load(args.ckpt, weights_only=True)
    meta = saved["meta"]
    net = create_model(meta["arch"], meta["num_classes"], meta["stem"])
    net.load_state_dict(saved["state_dict"])
    net.eval()
    batch = torch.stack([preprocess(p, meta["image_size"], meta["mean"], meta["std"]) for p in args.images])
    with torch.inference_mode():
        probs = torch.softmax(net(batch), dim=1).numpy()
    names = meta["class_names"]
    keep = min(args.topk, len(names)) if args.topk else len(names)
    for path, row in zip(args.images, probs):
        order = np.argsort(-row, kind="stable")[:keep]
        width = max(len(names[i]) for i in order)
        print(path)
        for i in order:
            print(f"  {names[i]:<{width}}  {row[i]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
