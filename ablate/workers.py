"""Local worker processes: which GPU each gets, the command and environment it starts with, and watching them.

`ablate run --workers N` starts N `ablate run --worker-process` children on the same storage, each
seeing one GPU (CUDA_VISIBLE_DEVICES) or none; the storage URL travels in their environment, never
on their command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import torch

from .contract import DEVICE_ATTR, SLURM_ATTR, final_results
from .device import available_cores
from .errors import AblateError
from .planning import final_items, phase_name
from .spec import Study
from .status import progress_line
from .storage import STORAGE_ENV, open_storage


def cuda_device_count() -> int:
    """CUDA GPUs this process sees (one function, so tests can fake a host with several)."""
    return torch.cuda.device_count()


def visible_devices() -> list[str]:
    """This process's CUDA_VISIBLE_DEVICES entries ([] when unset): how its cuda:i map to physical GPUs."""
    return [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]


def describe_device(device: torch.device) -> str:
    """'cpu', 'cuda:0', or 'cuda:0 (physical 2)' where CUDA_VISIBLE_DEVICES renumbers the GPUs: which GPU a
    trial really ran on, recorded on the trial and shown by `ablate status`."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = visible_devices()
    return f"cuda:{index}" + (f" (physical {visible[index]})" if index < len(visible) else "")


def slurm_job() -> str | None:
    """The SLURM job this process runs in: '<array job id>_<task id>' for an array task (as squeue and
    scancel name it), the job id otherwise, None outside SLURM."""
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID", "").strip(), os.environ.get("SLURM_ARRAY_TASK_ID", "").strip()
    if job and task:
        return f"{job}_{task}"
    return os.environ.get("SLURM_JOB_ID", "").strip() or None


def worker_attrs(device: str) -> dict[str, str]:
    """What a trial records about its worker when it is claimed (besides host:pid): the device, and the
    SLURM job when there is one, so `ablate status` can say which job runs which item."""
    job = slurm_job()
    return {DEVICE_ATTR: device, **({SLURM_ATTR: job} if job else {})}


def placeable_gpus(study: Study) -> int:
    """GPUs local workers can be spread over: none when the study pins its device (cpu, or one cuda:N)."""
    return cuda_device_count() if study.runtime.device in ("auto", "cuda") else 0


def worker_gpus(workers: int | None, gpus: list[int] | None, per_gpu: int | None, count: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each local worker; None for a CPU worker (its environment left alone).

    Worker i gets GPU i mod k of the k chosen ones (`gpus`, numbered as this process sees them; default
    all `count`), so each child sees one GPU, as cuda:0. Workers share a GPU only when asked: up to
    `per_gpu` on each, and `workers` then defaults to per_gpu x k.
    """
    if workers is not None and workers < 1:
        raise AblateError(f"--workers must be >= 1, got {workers}.")
    if per_gpu is not None and per_gpu < 1:
        raise AblateError(f"--workers-per-gpu must be >= 1, got {per_gpu}.")
    if count == 0:
        if gpus or per_gpu is not None:
            raise AblateError("--gpus / --workers-per-gpu: no CUDA GPU to place workers on (none is visible, or the "
                              "study's runtime.device is cpu or one fixed cuda:N).")
        return [None] * (workers or 1)
    chosen = list(gpus) if gpus else list(range(count))
    bad = [g for g in chosen if not 0 <= g < count]
    if bad or len(set(chosen)) != len(chosen):
        raise AblateError(f"--gpus {','.join(map(str, chosen))}: give distinct GPU numbers from 0 to {count - 1} "
                          f"(this host shows {count} GPU(s)).")
    k = len(chosen)
    if per_gpu is None:
        n = workers or 1
        if n > k:
            raise AblateError(f"--workers {n} is more than the {k} GPU(s) in use, and each worker gets a GPU of "
                              "its own: pass --workers-per-gpu M to run up to M workers on each GPU (--workers then "
                              f"defaults to M x {k}), or choose GPUs with --gpus.")
    else:
        n = workers or per_gpu * k
        if n > per_gpu * k:
            raise AblateError(f"--workers {n} is more than --workers-per-gpu {per_gpu} x {k} GPU(s) = {per_gpu * k}.")
    visible = visible_devices()
    ids = visible[:count] if len(visible) >= count else [str(i) for i in range(count)]
    return [ids[chosen[i % k]] for i in range(n)]


def warn_oversubscribed(study: Study, workers: int, progress: bool = True) -> bool:
    """Warn when workers x training threads exceed the cores: each worker keeps the study's threads
    (they are numerics), so more workers than fit slow every one of them instead."""
    threads, cores = study.runtime.threads or available_cores(), available_cores()
    if workers * threads <= cores:
        return False
    if progress:
        print(f"warning: {workers} worker(s) x {threads} training thread(s) = {workers * threads} > {cores} cores: "
              "the workers will slow each other down. The thread count is part of the study (it changes float "
              "results), so it is not lowered behind your back: set runtime.threads in the study file (or --threads) "
              f"to {max(1, cores // workers)} for {workers} workers.", file=sys.stderr, flush=True)
    return True


def worker_command(study: Study, phases: tuple[str, ...], allow_changed_spec: bool, retry_failed: bool,
                   data_dir: str | None) -> list[str]:
    """A local worker's argv. The storage URL is not on it (argv is readable by every user of the host
    through ps and /proc): it travels in the worker's environment, see `worker_env`."""
    cmd = [sys.executable, "-m", "ablate", "run", str(study.path), "--phases", ",".join(phases), "--quiet",
           "--worker-process"]
    if study.runtime.threads is not None:  # the file's value or a --threads override: the same fingerprint
        cmd += ["--threads", str(study.runtime.threads)]
    if allow_changed_spec:
        cmd.append("--allow-changed-spec")
    if retry_failed:
        cmd.append("--retry-failed")
    if data_dir:
        cmd += ["--data-dir", data_dir]
    return cmd


def worker_env(study: Study, gpu: str | None) -> dict[str, str]:
    """A local worker's environment: the storage URL ($ABLATE_STORAGE) and, on a GPU host, its one GPU."""
    env = {**os.environ, STORAGE_ENV: study.storage}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def spawn_workers(study: Study, devices: list[str | None], phases: tuple[str, ...], allow_changed_spec: bool,
                  retry_failed: bool, data_dir: str | None, progress: bool = True) -> int:
    """One local `ablate run` process per entry of `devices` (its CUDA_VISIBLE_DEVICES, or None: CPU), on
    the same storage, each with the study's own thread count. Returns how many exited 1 (items failed)."""
    cmd = worker_command(study, phases, allow_changed_spec, retry_failed, data_dir)
    procs = [subprocess.Popen(cmd, env=worker_env(study, gpu)) for gpu in devices]
    try:
        codes = watch(procs, study, progress)
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    if any(c not in (0, 1) for c in codes):
        raise AblateError(f"{sum(1 for c in codes if c)} of {len(procs)} workers failed (exit codes {codes}); "
                          "re-run the same command to resume.")
    return sum(1 for c in codes if c == 1)


def watch(procs: list[subprocess.Popen], study: Study, progress: bool, poll_s: float = 5.0) -> list[int]:
    """Wait for the worker processes, printing the final phase's progress line when it changes."""
    storage, last = open_storage(study.storage) if progress else None, ""
    while any(p.poll() is None for p in procs):
        time.sleep(poll_s)
        if storage is not None and phase_name(study, "final") in optuna.get_all_study_names(storage=storage):
            final = optuna.load_study(study_name=phase_name(study, "final"), storage=storage)
            line = progress_line("final", final, final_items(study, final_results(final)))
            if line != last:
                print(f"{line} ({len(procs)} workers)", file=sys.stderr, flush=True)
                last = line
    return [p.returncode for p in procs]
