"""`ablate run STUDY`: profile, tune and train every arm x seed; re-running resumes.

It ends with one paragraph on stderr (where each phase stands, and what to type next) and exits 1
when an item failed in this run.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..contract import PHASES
from ..errors import AblateError
from ..runner import run_study
from ..spec import load_study
from ..status import summary_text
from ..storage import STORAGE_ENV
from . import csv_list, int_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a study (resumes where it stopped)",
        description="Run a study: profile, tune and train every arm x seed; re-running resumes. Ends with a summary "
                    "on stderr; exits 1 when an item failed in this run, 2 on a usage error.",
        epilog=f"environment: ${STORAGE_ENV} sets the storage URL when --storage is not given (it keeps a password "
               "off the command line; local workers get their storage this way). $ABLATE_HOST overrides the host "
               "name workers record; $ABLATE_HEARTBEAT_S / $ABLATE_GRACE_S set the heartbeat interval (20 s) and "
               "the grace period (90 s) after which a silent worker's trial is re-run elsewhere (database storage).")
    p.add_argument("study", help="study file (studies/*.yaml)")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes sharing the storage (default 1; with --workers-per-gpu: M x GPUs). "
                        "On a host with CUDA GPUs each worker gets its own GPU (worker i: GPU i mod k, through "
                        "CUDA_VISIBLE_DEVICES)")
    p.add_argument("--gpus", type=int_list, help="comma list of the GPUs to place workers on (default: all visible)")
    p.add_argument("--workers-per-gpu", type=int, metavar="M", help="allow up to M workers on each GPU")
    p.add_argument("--storage", help=f"override the study's storage URL (sqlite:///, postgresql://, journal:PATH); "
                                     f"default ${STORAGE_ENV} when set, else the study file's. A password given here "
                                     f"is visible to other users of this host (ps): prefer ${STORAGE_ENV}")
    p.add_argument("--allow-changed-spec", action="store_true", help="continue although the study file changed")
    p.add_argument("--retry-failed", action="store_true", help="re-run trials that failed (non-finite loss, OOM)")
    p.add_argument("--phases", type=csv_list, default=list(PHASES), help="comma list of profile,tune,final")
    p.add_argument("--data-dir", help="dataset root (default: $ABLATE_DATA or ./data)")
    p.add_argument("--threads", type=int,
                   help="training threads per worker (overrides the study's runtime.threads; part of the fingerprint, "
                        "since threads change float results)")
    p.add_argument("--quiet", action="store_true", help="no progress output (each worker's start-up line and the closing summary are still printed)")
    p.add_argument("--worker-process", action="store_true", help=argparse.SUPPRESS)  # spawned by --workers: no summary
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise AblateError(f"--threads must be a positive integer, got {args.threads}.")
    storage = args.storage or os.environ.get(STORAGE_ENV, "").strip() or None
    study = load_study(args.study, storage=storage, threads=args.threads)
    bad = [p for p in args.phases if p not in PHASES]
    if bad:
        raise AblateError(f"--phases: unknown phase(s) {', '.join(bad)}; allowed: {', '.join(PHASES)}.")
    outcome = run_study(
        study,
        workers=args.workers,
        gpus=args.gpus,
        workers_per_gpu=args.workers_per_gpu,
        allow_changed_spec=args.allow_changed_spec,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
        data_dir=args.data_dir,
        phases=tuple(p for p in PHASES if p in args.phases),
    )
    if not args.worker_process:
        print(summary_text(outcome), file=sys.stderr, flush=True)
    return 0 if outcome.ok else 1
