"""Evaluate a trained checkpoint: top-1/top-5 accuracy, loss, precision/recall/F1 per class with
their macro and weighted averages, calibration error, confusion matrix and reliability diagram.

``python -m mindresnet.evaluate --ckpt ckpt/resnet50-best.ckpt --data-dir datasets-cifar10-bin``
reads the model and the dataset kind from the checkpoint's metadata (cifar10: test split;
folder: val split), prints a report (``--json``: machine-readable), then saves the confusion
matrix and, beside it, the reliability diagram. The report itself is :mod:`mindresnet.report`'s.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

from mindresnet.cli import run_cli
from mindresnet.cli.args import DEFAULT_CKPT, add_data_args, add_model_args, model_from_args
from mindresnet.fileio import write_text
from mindresnet.report import (RELIABILITY_PNG, TTA_MODES, evaluate_model, format_report, predictions_csv,
                               save_figures)
from mindresnet.tools.eval_data import build_eval_dataset


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mindresnet.evaluate`` command line."""
    parser = argparse.ArgumentParser(prog="python -m mindresnet.evaluate", description=__doc__.split("\n")[0])
    add_model_args(parser, ckpt_default=DEFAULT_CKPT)
    add_data_args(parser, batch_size=256)
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--tta", choices=TTA_MODES, default=None,
                        help="test-time augmentation: flip averages each image's and its mirror's logits")
    parser.add_argument("--confusion", default="confusion_matrix.png",
                        help="confusion-matrix PNG to write (default: confusion_matrix.png; '' to skip)")
    parser.add_argument("--reliability", default=None,
                        help=f"reliability-diagram PNG to write (default: {RELIABILITY_PNG} beside the confusion "
                             "matrix, none without it; '' to skip)")
    parser.add_argument("--save-predictions", metavar="FILE.csv",
                        help="write one row per image, in dataset order: index, true class, predicted class, "
                             "its probability")
    return parser


def figure_paths(confusion: Optional[str], reliability: Optional[str]) -> Tuple[Optional[Path], Optional[Path]]:
    """(confusion-matrix PNG, reliability-diagram PNG) to write; '' skips one; an unset reliability
    path lies beside the confusion matrix, and is skipped with it."""
    if reliability is None:
        reliability = str(Path(confusion).parent / RELIABILITY_PNG) if confusion else ""
    return (Path(confusion) if confusion else None), (Path(reliability) if reliability else None)


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.ckpt`` on ``args.data_dir``; print the report, then write its figures."""
    net, meta = model_from_args(args)
    dataset, class_names = build_eval_dataset(meta, args.data_dir, args.batch_size, args.workers, args.dataset)
    report = evaluate_model(net, dataset, class_names, tta=args.tta)
    confusion, reliability = figure_paths(args.confusion, args.reliability)
    if args.json:
        print(json.dumps({"checkpoint": str(args.ckpt), "arch": meta.arch, **report.to_dict(),
                          "confusion_png": str(confusion) if confusion else None,
                          "reliability_png": str(reliability) if reliability else None}), flush=True)
    else:
        print(format_report(report, title=f"{args.ckpt} ({meta.arch}) on {args.data_dir}"), flush=True)
    save_figures(report, confusion, reliability, title=f"{meta.arch} on {args.data_dir}")
    if args.save_predictions:
        write_text(args.save_predictions, predictions_csv(report))
    if not args.json:
        for name, path in (("confusion matrix", confusion), ("reliability diagram", reliability)):
            if path is not None:
                print(f"{name}: {path}")
        if args.save_predictions:
            print(f"predictions: {args.save_predictions}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
