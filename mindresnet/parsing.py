"""How flags and YAML files spell values, and the argparse pieces that accept several spellings of a flag.

A leaf module (it imports nothing of mindresnet): the training configuration
(:mod:`mindresnet.training.config`) and the tools' command lines (:mod:`mindresnet.cli.args`) share it.
"""
from __future__ import annotations

import argparse
import re
from typing import Sequence

TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")
NONE_WORDS = ("none", "null", "")


def parse_bool(text) -> bool:
    """``true/yes/1/on`` or ``false/no/0/off`` (any case; real booleans pass through)."""
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected one of {'/'.join(TRUE_WORDS + FALSE_WORDS)}, got {text!r}")


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_bool_flag(parser, flag: str, dest: str, default, help_text: str, aliases: Sequence[str] = ()) -> None:
    """``--flag`` (true), ``--flag VALUE`` and ``--no-flag`` (false), all into ``dest``; ``aliases``: other
    spellings of ``--flag``."""
    parser.add_argument(flag, *aliases, dest=dest, nargs="?", const=True, type=parse_bool, default=default,
                        metavar="BOOL", help=help_text)
    parser.add_argument("--no-" + flag[2:], dest=dest, action="store_false", default=default,
                        help=argparse.SUPPRESS)


class AliasParser(argparse.ArgumentParser):
    """A parser of flags with several spellings: ``--help`` lists them once (:class:`AliasHelpFormatter`),
    an error names the first, and no prefix of a flag stands for it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_abbrev=False, formatter_class=AliasHelpFormatter, **kwargs)

    def error(self, message: str):
        super().error(re.sub(r"argument (--[\w-]+)(/--[\w-]+)+", r"argument \1", message))


class AliasHelpFormatter(argparse.HelpFormatter):
    """``--help`` lists a flag's spellings once, then its value: ``--batch-size, --batch_size BATCH_SIZE``."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{', '.join(action.option_strings)} {value}"
