"""`ablate run STUDY`: profile, tune and train every arm x seed; re-running resumes."""

from __future__ import annotations

import argparse

from ..errors import AblateError
from ..spec import load_study
from ..study import PHASES, run_study
from . import csv_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a study (resumes where it stopped)")
    p.add_argument("study", help="study file (studies/*.yaml)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the storage")
    p.add_argument("--storage", help="override the study's storage URL (sqlite:///, postgresql://, journal:PATH)")
    p.add_argument("--allow-changed-spec", action="store_true", help="continue although the study file changed")
    p.add_argument("--retry-failed", action="store_true", help="re-run trials that failed (non-finite loss, OOM)")
    p.add_argument("--phases", type=csv_list, default=list(PHASES), help="comma list of profile,tune,final")
    p.add_argument("--data-dir", help="dataset root (default: $ABLATE_DATA or ./data)")
    p.add_argument("--threads", type=int,
                   help="training threads per worker (overrides the study's runtime.threads; part of the fingerprint, "
                        "since threads change float results)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise AblateError(f"--threads must be a positive integer, got {args.threads}.")
    study = load_study(args.study, storage=args.storage, threads=args.threads)
    if args.workers < 1:
        raise AblateError(f"--workers must be >= 1, got {args.workers}.")
    bad = [p for p in args.phases if p not in PHASES]
    if bad:
        raise AblateError(f"--phases: unknown phase(s) {', '.join(bad)}; allowed: {', '.join(PHASES)}.")
    run_study(
        study,
        workers=args.workers,
        allow_changed_spec=args.allow_changed_spec,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
        data_dir=args.data_dir,
        phases=tuple(p for p in PHASES if p in args.phases),
    )
    return 0
