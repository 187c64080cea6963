"""``python -m mindresnet.train [flags]`` (``scripts/run_train.sh`` wraps it): a thin CLI over
:func:`mindresnet.training.fit`. Defaults reproduce the MindSpore ResNet50 tutorial's transfer learning."""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from mindresnet.cli import run_guarded
from mindresnet.training.config import parse_args
from mindresnet.training.run import fit
from mindresnet.training.run_log import LOG_FORMAT


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)

    def train() -> int:
        result = fit(parse_args(argv))
        print(f"best {result.selection_split} accuracy {result.best_accuracy:.4f}: {result.best_path}")
        if result.test is not None:
            print(f"test accuracy {result.test['accuracy']:.4f} (top-5 {result.test['top5']:.4f}) of that checkpoint")
        return 0

    return run_guarded(train)


if __name__ == "__main__":
    sys.exit(main())
