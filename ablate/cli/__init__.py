"""The `ablate` command: one module per subcommand, each with `add_parser(subparsers)`.

User mistakes (AblateError) become one paragraph on stderr and exit code 2; argparse's own usage
errors also exit 2; Ctrl-C exits 130 and SIGTERM 143, both after marking the running trial.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or `kill`): unwound like Ctrl-C, so the running trial is marked for a re-run."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning, module="fvcore")
    args = build_parser().parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        return int(args.func(args) or 0)
    except AblateError as err:
        print(f"ablate {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"ablate {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def csv_list(text: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'] (argparse type for comma-separated options)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
