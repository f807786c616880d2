"""The `ablate` command: one module per subcommand, each with `add_parser(subparsers)`.

User mistakes (AblateError) become one paragraph on stderr and exit code 2; argparse's own usage
errors also exit 2; Ctrl-C exits 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from ..errors import AblateError

# subcommand modules under ablate.cli, in the order `ablate --help` lists them
COMMANDS = ("list", "profile", "data", "train", "bench", "plan", "run", "status", "dashboard", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ablate",
        description="Attention-module ablations for CNNs: build, profile, train and compare every arm.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning, module="fvcore")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AblateError as err:
        print(f"ablate {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ablate {args.command}: interrupted", file=sys.stderr)
        return 130


def csv_list(text: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'] (argparse type for comma-separated options)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
