"""A study as a SLURM job array: one array task per worker, the storage URL kept out of sight.

Each array task runs the normal worker loop (`ablate run STUDY`) with the CPUs and the GPU its
allocation gives; storage is the queue, so tasks may start late, die or be requeued in any order
and each arm x seed still trains once. The script is written under the study's run folder
(`runs/<study>/slurm/array.sbatch`), so it can be read and submitted again with plain `sbatch`.

The storage URL (with its password) reaches the tasks through an environment file beside the
script that only the user can read (mode 0600), sourced by the script at run time: it is never in
the script, the job's name or command line, or what `squeue` and `scontrol show job` print, and
`sbatch` is started without it in its environment. SQLite is refused for more than one worker:
array tasks land on several nodes, and SQLite on a network filesystem loses data.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .bounds import MAX_THREADS, SLURM_MAX_ARRAY_SIZE
from .errors import AblateError
from .files import atomic_write
from .spec import Study
from .storage import STORAGE_ENV, mask_url

SECRET_ENV = (STORAGE_ENV, "PGPASSWORD")  # what the environment file carries, and sbatch is started without
SCRIPT_NAME = "array.sbatch"
ENV_NAME = "storage.env"
_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}|(\d+-)\d+")  # SLURM's --time forms: M, M:S, H:M:S, D-H, D-H:M[:S]
_MEM = re.compile(r"\d+[KMGT]?")


@dataclass(frozen=True)
class JobRequest:
    """What `ablate slurm` asks SLURM for; every field becomes one #SBATCH line."""

    workers: int = 1
    partition: str | None = None
    time: str | None = None
    cpus_per_worker: int | None = None  # None: the study's runtime.threads, else 1
    gpus_per_worker: int = 0
    mem: str | None = None
    sbatch_args: tuple[str, ...] = ()
    requeue: bool = False


def slurm_dir(study: Study) -> Path:
    return study.run_dir / "slurm"


def check_counts(job: JobRequest) -> None:
    """The request's counts alone, which need no study: `ablate slurm` checks them before the study file is read
    (which imports torch to build the arms), `check_request` again for a request built in code."""
    if job.workers < 1:
        raise AblateError(f"--workers must be >= 1, got {job.workers}.")
    if job.workers > SLURM_MAX_ARRAY_SIZE:  # indexes 0..workers-1; sbatch refuses an index >= MaxArraySize
        raise AblateError(f"--workers {job.workers}: the job array's indexes would be 0..{job.workers - 1}, but "
                          f"SLURM's default MaxArraySize ({SLURM_MAX_ARRAY_SIZE}) allows indexes up to "
                          f"{SLURM_MAX_ARRAY_SIZE - 1} and sbatch refuses more; allowed: 1 to {SLURM_MAX_ARRAY_SIZE}. "
                          "For more workers, run `ablate slurm` several times on the same (PostgreSQL or journal) "
                          "storage: their workers share the study's items.")
    if job.gpus_per_worker not in (0, 1):
        raise AblateError(f"--gpus-per-worker {job.gpus_per_worker}: a worker trains on one GPU; for more GPUs "
                          "run more workers (--workers N --gpus-per-worker 1). Allowed: 0 or 1.")


def check_request(study: Study, job: JobRequest) -> int:
    """Refuse what cannot work, before anything is written. Returns the CPUs per worker."""
    check_counts(job)
    if job.workers > 1 and study.storage.startswith("sqlite:"):
        raise AblateError(
            f"{study.path}: storage {mask_url(study.storage)} is SQLite, and {job.workers} array tasks may run on "
            "several nodes: SQLite on a shared (network) filesystem loses data. Use PostgreSQL "
            "(export ABLATE_STORAGE=postgresql+psycopg://USER@HOST:5432/DB, password in ~/.pgpass or $PGPASSWORD) "
            "or a journal file on the shared filesystem (--storage journal:/shared/PATH.journal); see "
            "docs/scale-out.md. With SQLite, run one worker (--workers 1).")
    threads = study.runtime.threads
    cpus = job.cpus_per_worker if job.cpus_per_worker is not None else (threads or 1)
    if not 1 <= cpus <= MAX_THREADS:  # also the worker's training threads
        raise AblateError(f"--cpus-per-worker must be from 1 to {MAX_THREADS}, got {cpus}.")
    if threads is not None and cpus < threads:
        raise AblateError(f"{study.path}: runtime.threads is {threads} (part of the study's fingerprint), but "
                          f"--cpus-per-worker {cpus} would run {threads} threads on {cpus} CPU(s); give "
                          f"--cpus-per-worker {threads} or more.")
    if job.gpus_per_worker == 0 and study.runtime.device.startswith("cuda"):
        raise AblateError(f"{study.path}: runtime.device is {study.runtime.device}, but no GPU is requested; "
                          "pass --gpus-per-worker 1.")
    if job.time is not None and not _TIME.fullmatch(job.time):
        raise AblateError(f"--time {job.time!r}: use a SLURM time: MINUTES, HH:MM:SS or DAYS-HH[:MM[:SS]].")
    if job.mem is not None and not _MEM.fullmatch(job.mem):
        raise AblateError(f"--mem {job.mem!r}: use a SLURM size, e.g. 4000 (MB) or 16G.")
    for arg in job.sbatch_args:
        if not arg.startswith("-") or any(c in arg for c in "\n\r\0"):
            raise AblateError(f"--sbatch-arg {arg!r}: give one sbatch option per --sbatch-arg, e.g. "
                              "--sbatch-arg=--account=lab or --sbatch-arg=--qos=long.")
        if any(secret and secret in arg for secret in secrets_of(study.storage)):
            raise AblateError("--sbatch-arg: an argument holds the storage password; it would be written into "
                              "the job script. Pass secrets through $ABLATE_STORAGE or $PGPASSWORD instead.")
    return cpus


def secrets_of(url: str) -> list[str]:
    """The password(s) in a storage URL: what the script, the job and sbatch's command line must never hold."""
    masked = mask_url(url)
    if masked == url:
        return []
    found = [a for a in re.split(r"\*\*\*", masked) if a]
    rest, out = url, []
    for part in found:  # the URL minus the parts the mask kept: what it hid
        head, _, rest = rest.partition(part)
        if head:
            out.append(head)
    if rest:
        out.append(rest)
    return out


def job_script(study: Study, job: JobRequest, workdir: Path, python: str = sys.executable) -> str:
    """The job-array script: #SBATCH lines, the environment file, and one `ablate run` per task."""
    cpus = check_request(study, job)
    folder, name = slurm_dir(study), f"ablate-{study.name}"
    sbatch = [f"--job-name={name}", f"--array=0-{job.workers - 1}", "--ntasks=1", f"--cpus-per-task={cpus}"]
    sbatch += [f"--partition={job.partition}"] * bool(job.partition) + [f"--time={job.time}"] * bool(job.time)
    sbatch += [f"--mem={job.mem}"] * bool(job.mem) + ["--gres=gpu:1"] * job.gpus_per_worker
    sbatch += ["--requeue"] * job.requeue + list(job.sbatch_args)
    sbatch += [f"--chdir={workdir}", f"--output={folder}/%x-%A_%a.out", "--open-mode=append"]
    threads = f" --threads {study.runtime.threads}" if study.runtime.threads else ' --threads "$SLURM_CPUS_PER_TASK"'
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "#!/bin/bash",
        f"# Study {study.name} ({study.path}) as a SLURM job array, written by `ablate slurm` on {stamp}.",
        f"# Each array task ({job.workers} in all) is one ablate worker: it claims arm x seed items from the",
        "# study's storage until none is left. Tasks may start late, die or be requeued in any order: each",
        "# item still trains once, and an interrupted item resumes from its last epoch's checkpoint",
        f"# ({study.run_dir}/checkpoints, which every node must share). Submit again: sbatch {folder / SCRIPT_NAME}",
        *(f"#SBATCH {a}" for a in sbatch),
        "set -euo pipefail",
        f"# storage: {mask_url(study.storage)}, from a file only you can read (0600)",
        f"set -a; source {shlex.quote(str(folder / ENV_NAME))}; set +a",
    ]
    if job.gpus_per_worker:
        lines.append("# device: the GPU SLURM binds to this task (cuda:0 through CUDA_VISIBLE_DEVICES)")
    elif study.runtime.device == "auto":
        lines.append('export CUDA_VISIBLE_DEVICES=""  # no GPU requested: train on the CPU')
    lines += [
        "# one worker; training threads: " + (f"the study's runtime.threads ({study.runtime.threads})"
                                              if study.runtime.threads else "the CPUs SLURM gives this task"),
        f"srun {shlex.quote(python)} -m ablate run {shlex.quote(str(study.path))}{threads}",
    ]
    return "\n".join(lines) + "\n"


def env_file_text(study: Study, environ: dict[str, str]) -> str:
    """The environment file: the storage URL, and $PGPASSWORD when set, shell-quoted for `source`."""
    values = {STORAGE_ENV: study.storage, **{k: environ[k] for k in SECRET_ENV[1:] if environ.get(k)}}
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def write_private(path: Path, text: str) -> None:
    """Write `path` readable and writable by its owner only (0600), atomically; the mode is set before any
    secret is written, so no other user ever sees the content."""

    def write(tmp: Path) -> None:
        os.chmod(tmp, 0o600)
        tmp.write_text(text)

    atomic_write(path, write)


def write_job(study: Study, job: JobRequest, workdir: Path, environ: dict[str, str]) -> Path:
    """Write the script and its environment file under the study's run folder. Returns the script's path."""
    script = job_script(study, job, workdir)
    folder = workdir / slurm_dir(study)
    folder.mkdir(parents=True, exist_ok=True)
    write_private(folder / ENV_NAME, env_file_text(study, environ))
    path = folder / SCRIPT_NAME
    atomic_write(path, lambda tmp: tmp.write_text(script))
    return path


def submit(script: Path, environ: dict[str, str]) -> str:
    """`sbatch --parsable SCRIPT`, with the storage secrets taken out of its environment (the tasks read
    them from the environment file). Returns the job id."""
    env = {k: v for k, v in environ.items() if k not in SECRET_ENV}
    try:
        done = subprocess.run(["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    except FileNotFoundError:
        raise AblateError("sbatch not found: run `ablate slurm` on a SLURM login node, or use --dry-run to print "
                          "the script.") from None
    if done.returncode != 0:
        raise AblateError(f"sbatch {script} failed (exit {done.returncode}): {mask_url(done.stderr.strip())}")
    return done.stdout.strip().split(";")[0]
