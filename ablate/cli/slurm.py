"""`ablate slurm STUDY`: write the study's SLURM job-array script (one array task per worker) and submit it.

The script lands in runs/<study>/slurm/array.sbatch (submit it again with plain `sbatch`); the storage
URL goes to an environment file beside it, readable by the user only, never into the script or onto
a command line. `--dry-run` prints the script and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..bounds import SLURM_MAX_ARRAY_SIZE
from . import add_storage, add_study, storage_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "slurm", help="run a study as a SLURM job array (one array task per worker)",
        description="Write a SLURM job-array script for the study (one array task per worker, each running "
                    "`ablate run`), keep it under runs/<study>/slurm/, and submit it with sbatch. The storage URL "
                    "reaches the tasks through an environment file readable only by you (mode 0600), never "
                    "through the script, the job's name or its command line.",
        epilog="storage: --storage, else $ABLATE_STORAGE, else the study file's. SQLite is refused for more than "
               "one worker (array tasks run on several nodes): use PostgreSQL or a journal file. A task that "
               "gets SIGTERM (time limit, preemption, scancel) stops at its next safe point with the checkpoint "
               "saved and its item marked for a re-run; see docs/scale-out.md.")
    add_study(p)
    add_storage(p)
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help=f"array tasks, one worker each, 1 to {SLURM_MAX_ARRAY_SIZE} (SLURM's default MaxArraySize; "
                        "default 1)")
    p.add_argument("--partition", metavar="NAME", help="SLURM partition (default: the cluster's)")
    p.add_argument("--time", metavar="TIME", help="time limit per task, e.g. 04:00:00 or 2-00:00:00")
    p.add_argument("--cpus-per-worker", type=int, metavar="C",
                   help="CPUs per task, also the training threads unless the study pins runtime.threads "
                        "(default: runtime.threads, else 1)")
    p.add_argument("--gpus-per-worker", type=int, default=0, metavar="G",
                   help="0 (train on CPUs) or 1 (one GPU per task, --gres=gpu:1); default 0")
    p.add_argument("--mem", metavar="SIZE", help="memory per task, e.g. 16G")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="OPTION",
                   help="one more #SBATCH line, e.g. --sbatch-arg=--account=lab (repeatable)")
    p.add_argument("--requeue", action="store_true",
                   help="let SLURM requeue a preempted task (#SBATCH --requeue); it resumes its item's checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the script; write and submit nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..slurm import JobRequest, check_counts
    from ..spec import load_study

    job = JobRequest(workers=args.workers, partition=args.partition, time=args.time,
                     cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker, mem=args.mem,
                     sbatch_args=tuple(args.sbatch_arg), requeue=args.requeue)
    check_counts(job)  # --workers, --gpus-per-worker: before the study file is read (its arms import torch)
    storage = storage_option(args)
    study = load_study(args.study, storage=storage)  # a bad file is refused before the heavy imports below
    from ..slurm import job_script, submit, write_job
    from ..status import storage_overridden

    if args.dry_run:
        print(job_script(study, job, Path.cwd()), end="")
        return 0
    if study.storage.startswith("journal:") and args.workers > 1:
        print("warning: a journal file has no heartbeats: an array task killed outright (SIGKILL, a failed node) "
              "leaves its item RUNNING until a worker runs on that node again (docs/scale-out.md, section 6); "
              "PostgreSQL re-runs it anywhere after the grace period.", file=sys.stderr)
    script = write_job(study, job, Path.cwd(), dict(os.environ))
    job_id = submit(script, dict(os.environ))
    same = ' --storage "$ABLATE_STORAGE"' if storage_overridden(study) else ""
    folder = script.parent.relative_to(Path.cwd())
    print(f"submitted job {job_id}: {args.workers} array task(s) of {study.name}; script {folder / script.name}, "
          f"logs {folder}/ablate-{study.name}-{job_id}_*.out\n"
          f"watch: ablate status {study.path}{same}    (squeue -j {job_id}; cancel: scancel {job_id})\n"
          f"then:  ablate report {study.path}{same}", file=sys.stdout)
    return 0
