"""`ablate run STUDY`: profile, tune and train every arm x seed; re-running resumes.

It ends with one paragraph on stderr (where each phase stands, and what to type next) and exits 1
when an item failed in this run.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..device import available_cores
from ..errors import AblateError
from . import add_data_dir, add_storage, add_study, add_threads, csv_list, int_list, storage_option

if TYPE_CHECKING:
    from ..spec import Study
    from ..status import RunOutcome


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a study (resumes where it stopped)",
        description="Run a study: profile, tune and train every arm x seed; re-running resumes. Ends with a summary "
                    "on stderr; exits 1 when an item failed in this run, 2 on a usage error.",
        epilog="environment: $ABLATE_STORAGE sets the storage URL when --storage is not given (it keeps a password "
               "off the command line; local workers get their storage this way). $ABLATE_HOST overrides the host "
               "name workers record; $ABLATE_HEARTBEAT_S / $ABLATE_GRACE_S set the heartbeat interval (20 s) and "
               "the grace period (90 s) after which a silent worker's trial is re-run elsewhere (database storage).")
    add_study(p)
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes sharing the storage (default 1; with --workers-per-gpu: M x GPUs). "
                        "On a host with CUDA GPUs each worker gets its own GPU (worker i: GPU i mod k, through "
                        "CUDA_VISIBLE_DEVICES)")
    p.add_argument("--gpus", type=int_list, help="comma list of the GPUs to place workers on (default: all visible)")
    p.add_argument("--workers-per-gpu", type=int, metavar="M", help="allow up to M workers on each GPU")
    add_storage(p)
    p.add_argument("--allow-changed-spec", action="store_true", help="continue although the study file changed")
    p.add_argument("--retry-failed", action="store_true", help="re-run trials that failed (non-finite loss, OOM)")
    p.add_argument("--phases", type=csv_list, help="comma list of profile,tune,final (default: all three)")
    add_data_dir(p)
    add_threads(p, default=None, default_text="the study file's runtime.threads, else every core (training "
                                              "threads, per worker; the profile phase times with measure.threads). "
                                              "Part of the study's fingerprint: threads change float results")
    p.add_argument("--quiet", action="store_true",
                   help="no progress output (each worker's start-up line and the closing summary are still printed)")
    p.add_argument("--worker-process", action="store_true", help=argparse.SUPPRESS)  # spawned by --workers: no summary
    p.set_defaults(func=run)


def run_study(study: Study, **kwargs: Any) -> RunOutcome:
    """ablate.runner.run_study, imported on first use: the runner loads Optuna, pandas and the training engine,
    which building the parser (`ablate --help`) does not need."""
    from ..runner import run_study as run_study_

    return run_study_(study, **kwargs)


def run(args: argparse.Namespace) -> int:
    from ..memory import check_workers

    if args.workers is not None:  # the host's memory, before the study (and torch) is loaded
        check_workers(args.workers)
    from ..spec import load_study

    storage = storage_option(args)
    threads = available_cores() if args.threads == 0 else args.threads
    first = args.phases is None or "profile" in args.phases  # a run's first process checks the data, as the runner does
    study = load_study(args.study, storage=storage, threads=threads, scan_folder=first, require_data=first,
                       data_dir=args.data_dir)  # refused before pandas and the runner load
    from ..contract import PHASES
    from ..status import summary_text

    phases = PHASES if args.phases is None else args.phases
    bad = [p for p in phases if p not in PHASES]
    if bad:
        raise AblateError(f"--phases: unknown phase(s) {', '.join(bad)}; allowed: {', '.join(PHASES)}.")
    from ..storage import environment_faults

    with environment_faults(study.storage):  # a full disk, a silent server: one line naming the storage
        outcome = run_study(
            study,
            workers=args.workers,
            gpus=args.gpus,
            workers_per_gpu=args.workers_per_gpu,
            allow_changed_spec=args.allow_changed_spec,
            retry_failed=args.retry_failed,
            progress=not args.quiet,
            data_dir=args.data_dir,
            phases=tuple(p for p in PHASES if p in phases),
        )
    if not args.worker_process:
        print(summary_text(outcome), file=sys.stderr, flush=True)
    return 0 if outcome.ok else 1
