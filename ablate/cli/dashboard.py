"""`ablate dashboard STUDY`: optuna-dashboard on the study's storage, bound to 127.0.0.1 by default."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import AblateError
from ..spec import load_study
from ..storage import mask_url


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="browse a study's trials in optuna-dashboard")
    p.add_argument("study", help="study file (studies/*.yaml)")
    p.add_argument("--storage", help="override the study's storage URL")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    study = load_study(args.study, storage=args.storage)
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).parent / "optuna-dashboard")
    if not shutil.which(exe):
        raise AblateError("optuna-dashboard is not installed; run `make setup` (it is a dependency of ablate).")
    url = study.storage.removeprefix("journal:")  # optuna-dashboard opens a journal file given its path
    print(f"optuna-dashboard for {study.name} ({mask_url(study.storage)}) at http://{args.host}:{args.port}/", flush=True)
    return subprocess.call([exe, url, "--host", args.host, "--port", str(args.port)])
