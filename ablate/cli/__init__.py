"""The `ablate` command: one module per subcommand, each with `add_parser(subparsers)`.

An option that several commands take (the study file, --storage, --data-dir, --device, --threads,
--backbone, --json) is added by one helper below, so it has one name, one meaning and one help text
everywhere. `main` builds the parser of the command it runs only (its module, and the registries its
choices list, import torch); every other command is listed by its summary in `COMMANDS`, so
`ablate --help` imports no torch. Each command module imports the study loader, storage, pandas,
Optuna, scipy and the training engine inside its `run`, so usage errors stay fast too.

User mistakes (AblateError) become one paragraph on stderr and exit code 2; argparse's own usage
errors also exit 2; faults of the environment (a full disk, read-only storage: EnvironmentFault, or
an OSError / database error deep in a library that says so) one line and exit code 1; Ctrl-C exits
130 and SIGTERM 143, both after marking the running trial (SIGTERM during a checkpointed training run
first reaches the next safe point: `ablate.preempt`). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..bounds import MAX_THREADS
from ..config import INT64_MAX, INT64_MIN, is_number
from ..errors import AblateError, EnvironmentFault, environment_fault
from ..preempt import Terminated, install, uninstall

# subcommand modules under ablate.cli, in the order `ablate --help` lists them, with the summary it shows
# (each module's add_parser passes the same text as its `help`; a test keeps them equal)
COMMANDS = {
    "list": "list attention types, positions and backbones (installed plugins included)",
    "profile": "params, MACs, latency and memory of every arm (no training)",
    "data": "list datasets and fetch one",
    "train": "train one arm on one dataset (ref000 recipe by default)",
    "bench": "ref000 training loop vs ablate's engine (samples/s, ratio, overhead)",
    "plan": "list a study's arms, trial count and estimated cost (no training)",
    "run": "run a study (resumes where it stopped)",
    "slurm": "run a study as a SLURM job array (one array task per worker)",
    "status": "trial counts per phase of a study (read-only)",
    "dashboard": "browse a study's trials in optuna-dashboard",
    "report": "write the study's report from its storage (no retraining)",
    "spec": "print the study-file reference (markdown, generated from the code)",
}


def build_parser(commands: Iterable[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The `ablate` parser with the full parsers of `commands` (default: all); every other command is
    listed by name and summary only, so its module (and torch) is not imported."""
    parser = argparse.ArgumentParser(
        prog="ablate",
        description="Attention-module ablations for CNNs: build, profile, train and compare every arm.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    full = set(commands)
    for name, summary in COMMANDS.items():
        if name in full:
            importlib.import_module(f"{__name__}.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def command_of(argv: Sequence[str]) -> list[str]:
    """The command `argv` runs, as a list for build_parser (empty when it names none: `ablate --help`)."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return [first] if first in COMMANDS else []


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning, module="fvcore")
    argv = sys.argv[1:] if argv is None else [*argv]  # not list(): `list` here is the `ablate list` module once loaded
    args = build_parser(command_of(argv)).parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    previous = install() if in_main else None  # SIGTERM: at once, or at a training run's next safe point
    try:
        return int(args.func(args) or 0)
    except EnvironmentFault as err:
        print(f"ablate {args.command}: error: {err}{_resumes(args)}", file=sys.stderr)
        return 1
    except AblateError as err:
        print(f"ablate {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a full disk, read-only storage, a silent server deep inside a library: one line, exit 1
        fault = environment_fault(err)
        if fault is None:
            raise
        print(f"ablate {args.command}: error: {fault}{_resumes(args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        hint = "; re-run the same command to resume" if _resumes(args) else ""  # nothing else keeps partial work
        print(f"ablate {args.command}: interrupted{hint}", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        if in_main:
            uninstall(previous)


def _resumes(args: argparse.Namespace) -> str:
    """' It resumes where it stopped.' for a command that keeps its partial work (run; train with a
    checkpoint), else '' (every other command starts again from the beginning)."""
    if args.command == "run" or (args.command == "train" and getattr(args, "checkpoint", None)):
        return " It resumes where it stopped."
    return ""


def option_names(err: AblateError) -> AblateError:
    """'options.batch_size: ...' (the config key path a command's options were checked under) -> '--batch-size:
    ...' (what the user typed)."""
    return AblateError(re.sub(r"\boptions\.([a-z_]+)", lambda m: "--" + m.group(1).replace("_", "-"), str(err)))


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


def stages(text: str) -> str | list[int]:
    """argparse type for --stages: 'all' or comma-separated 1-based block indexes (the range is checked
    against the backbone when the model is built)."""
    text = text.strip()
    if text == "all":
        return "all"
    try:
        return int_list(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated block indexes, got {text!r}") from None


# ------------------------------------------------------------------------------------------------
# options several commands take: one helper, one help text each

STUDY_HELP = "study file (studies/*.yaml)"
STORAGE_HELP = ("the study's storage URL, instead of the study file's: sqlite:///PATH, postgresql://USER@HOST/DB, "
                "journal:PATH, ... (every scheme: `ablate spec`); default: $ABLATE_STORAGE when set, else the study "
                "file's. A password written here is visible to other users of this host (ps): prefer "
                "$ABLATE_STORAGE")
THREADS_HELP = ("torch intra-op threads for this command, 1 <= N <= {most}, or 0 for every core this process may "
                "use; default here: {default}")
JSON_HELP = ("also write the results, with every field and setting, as JSON to FILE (a new file, or one ablate "
             "wrote: it is never written over anything else)")


def add_study(p: argparse.ArgumentParser, several: bool = False) -> None:
    """The study file positional; `several`: one or more (`ablate report A.yaml B.yaml`)."""
    if several:
        p.add_argument("study", nargs="+", help=f"{STUDY_HELP}; two or more: a side-by-side comparison, each "
                                                "study read from its own storage")
    else:
        p.add_argument("study", help=STUDY_HELP)


def add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL", help=STORAGE_HELP)


def storage_option(args: argparse.Namespace) -> str | None:
    """The storage a command opens: --storage, else $ABLATE_STORAGE, else None (the study file's); its syntax
    checked here, so a refusal names the option or variable it came from."""
    from ..storage import STORAGE_ENV, check_storage_url  # Optuna and SQLAlchemy: loaded by these commands anyway

    if args.storage:
        return check_storage_url(args.storage, "--storage")
    url = os.environ.get(STORAGE_ENV, "").strip()
    return check_storage_url(url, f"${STORAGE_ENV}") if url else None


def add_data_dir(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    from ..names import DATA_ENV

    p.add_argument("--data-dir", metavar="DIR", help=f"dataset root (default: ${DATA_ENV}, else ./data)")


def add_device(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    from ..device import DEVICE_SETTINGS

    p.add_argument("--device", default="auto", help=f"where to run: {', '.join(DEVICE_SETTINGS)}; auto is cuda when "
                                                     "available, else cpu (default: auto)")


def add_threads(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: int | None, default_text: str) -> None:
    """--threads N: torch intra-op threads for this command; 0 is every core, omitted is `default`
    (the command's own: timing defaults to 1 thread, training to every core, as in study files)."""
    p.add_argument("--threads", type=thread_count, default=default, metavar="N",
                   help=THREADS_HELP.format(most=MAX_THREADS, default=default_text))


def add_backbone(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | list[str],
                 several: bool = True) -> None:
    """--backbone: a comma-separated list where a command runs several, one name where it builds one."""
    from ..names import backbone_names  # built-in and installed names, without importing torch

    names = ", ".join(backbone_names())
    if several:  # [*default], not list(default): in this package `list` is the `ablate list` module once loaded
        p.add_argument("--backbone", type=csv_list, default=[*default], metavar="NAME[,NAME...]",
                       help=f"comma-separated backbones: {names} (default: {','.join(default)})")
    else:
        p.add_argument("--backbone", default=default, choices=backbone_names(), metavar="NAME",
                       help=f"backbone: {names} (default: {default})")


def add_json(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--json", type=Path, metavar="FILE", help=JSON_HELP)


def check_json(path: Path | None) -> None:
    """--json FILE, checked before the command works: a new file or a JSON file ablate wrote (its "ablate"
    key), never a user's file, a folder or a device."""
    from ..files import check_output_file, is_ablate_json

    if path is not None:
        check_output_file(path, "--json", "JSON file", is_ablate_json)


def write_json(path: Path | None, payload: Any, command: str) -> None:
    """--json FILE: write `payload` there atomically (folders created) under ablate's key, which names the
    command (so a later run knows the file as ablate's), and say so on stderr; nothing without it."""
    from ..files import atomic_write

    if path is None:
        return
    check_json(path)
    document = {"ablate": command, **payload} if isinstance(payload, dict) else {"ablate": command, "rows": payload}
    text = json.dumps(document, indent=2) + "\n"
    try:
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as err:
        raise EnvironmentFault(f"--json {path}: cannot write it: {err.strerror or err}; free space or choose "
                               "another path.") from None
    print(f"wrote {path}", file=sys.stderr)


def thread_count(text: str) -> int:
    """argparse type for --threads: 0 (every core) or 1 to MAX_THREADS (ablate.bounds: more crash torch)."""
    return _int_between(text, 0, MAX_THREADS, f"a thread count: 0 (every core) or 1 to {MAX_THREADS}")

