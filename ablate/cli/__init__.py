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

from ..config import INT64_MAX, INT64_MIN, is_number
from ..errors import AblateError
from ..timing import set_cublas_workspace

# subcommand modules under ablate.cli, in the order `ablate --help` lists them
COMMANDS = ("list", "profile", "data", "train", "bench", "plan", "run", "status", "dashboard", "report", "spec")


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
    set_cublas_workspace()  # first: cuBLAS reads it once per process (deterministic runs need it)
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


def finite_float(text: str) -> float:
    """argparse type: a float that is neither NaN nor infinite (float() parses 'nan' and 'inf', and NaN
    passes every range check after it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not is_number(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r} (NaN and infinities cannot work)")
    return value


def _int_between(text: str, low: int, high: int, words: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
    return value


def integer(text: str) -> int:
    """argparse type: an integer that fits 64 bits (seeds, sizes and counts end up in torch and SQLite)."""
    return _int_between(text, INT64_MIN, INT64_MAX, "an integer between -2**63 and 2**63-1")


def seed(text: str) -> int:
    """argparse type: a seed, 0 to 2**63-1 (torch.manual_seed's range, as in study files)."""
    return _int_between(text, 0, INT64_MAX, "a seed between 0 and 2**63-1")


def int_list(text: str) -> list[int]:
    """'1,64' -> [1, 64] (argparse type), every item a 64-bit integer."""
    try:
        return [integer(part) for part in csv_list(text)]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
