"""SLURM job arrays: the script, the storage secret, refusals, SIGTERM at a safe point; slow tests on a real SLURM.

The fast tests read the script `ablate slurm` writes, run the CLI against a fake `sbatch` that records
its command line and environment, and send SIGTERM to this process inside a training run. The slow
ones submit real job arrays to a running SLURM (`.ci/run` starts a one-node cluster and PostgreSQL):
one task cancelled mid-item, one SIGTERMed and requeued; every arm x seed once, results identical to
an uninterrupted run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from ablate.cli import main
from ablate.contract import RETRY_ATTR, SERIES_ATTR, SLURM_ATTR, WORKER_ATTR
from ablate.data import Data
from ablate.preempt import PREEMPTION, Preemption, Terminated, install, uninstall
from ablate.recipe import Recipe, Runtime
from ablate.slurm import JobRequest, check_request, job_script, secrets_of
from ablate.spec import load_study
from ablate.status import running_frame
from ablate.storage import open_storage
from ablate.train import model_factory, train
from ablate.workers import slurm_job, worker_attrs

from .conftest import write_study

PASSWORD = "Sl-urm_s3cret"
PG_URL = f"postgresql+psycopg://ablate:{PASSWORD}@db.example:5432/ablate"

# ----------------------------------------------------------------------------- the script


def _study(tmp_path: Path, **overrides: object):
    return load_study(write_study(tmp_path, **overrides), storage=PG_URL)


def test_dry_run_prints_a_one_screen_script_without_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path).relative_to(tmp_path)  # as a user types it, from the project folder
    monkeypatch.setenv("ABLATE_STORAGE", PG_URL)
    assert main(["slurm", str(path), "--dry-run", "--workers", "3", "--partition", "gpu", "--time", "04:00:00",
                 "--cpus-per-worker", "4", "--gpus-per-worker", "1", "--mem", "16G", "--requeue",
                 "--sbatch-arg=--account=lab", "--sbatch-arg=--qos=long"]) == 0
    script = capsys.readouterr().out
    lines = script.splitlines()
    assert len(lines) <= 30 and max(map(len, lines)) <= 120  # one screen
    sbatch = [line.removeprefix("#SBATCH ") for line in lines if line.startswith("#SBATCH ")]
    assert sbatch == ["--job-name=ablate-tiny", "--array=0-2", "--ntasks=1", "--cpus-per-task=4", "--partition=gpu",
                      "--time=04:00:00", "--mem=16G", "--gres=gpu:1", "--requeue", "--account=lab", "--qos=long",
                      f"--chdir={tmp_path}", "--output=runs/tiny/slurm/%x-%A_%a.out", "--open-mode=append"]
    assert lines[-1] == f'srun {sys.executable} -m ablate run {path} --threads "$SLURM_CPUS_PER_TASK"'
    assert "source runs/tiny/slurm/storage.env" in script
    assert PASSWORD not in script and "postgresql+psycopg://ablate:***@db.example:5432/ablate" in script
    assert "CUDA_VISIBLE_DEVICES=\"\"" not in script  # a GPU was asked for: SLURM binds it
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_pinned_threads_are_kept_and_no_gpu_means_cpu(tmp_path: Path) -> None:
    study = _study(tmp_path, runtime={"threads": 2})
    script = job_script(study, JobRequest(workers=2), tmp_path, python="python3")
    assert "#SBATCH --cpus-per-task=2" in script  # defaults to the study's threads
    assert script.endswith(f"srun python3 -m ablate run {study.path} --threads 2\n")
    assert 'export CUDA_VISIBLE_DEVICES=""' in script  # device auto, no GPU requested: the CPU
    assert "--gres" not in script and "--requeue" not in script and "--partition" not in script


@pytest.mark.parametrize("kwargs,storage,threads,device,match", [
    ({"workers": 2}, "sqlite", None, "auto", "SQLite on a shared"),
    ({"workers": 0}, "pg", None, "auto", "--workers must be >= 1"),
    ({"cpus_per_worker": 1}, "pg", 4, "auto", "runtime.threads is 4"),
    ({"gpus_per_worker": 2}, "pg", None, "auto", "a worker trains on one GPU"),
    ({}, "pg", None, "cuda", "no GPU is requested"),
    ({"time": "four hours"}, "pg", None, "auto", "--time"),
    ({"mem": "lots"}, "pg", None, "auto", "--mem"),
    ({"sbatch_args": ("account=lab",)}, "pg", None, "auto", "one sbatch option per --sbatch-arg"),
    ({"sbatch_args": ("--comment=a\n#SBATCH --x",)}, "pg", None, "auto", "one sbatch option"),
    ({"sbatch_args": (f"--comment={PASSWORD}",)}, "pg", None, "auto", "holds the storage password"),
])
def test_requests_that_cannot_work_are_refused(tmp_path: Path, kwargs: dict, storage: str, threads: int | None,
                                               device: str, match: str) -> None:
    runtime = {"device": device, **({"threads": threads} if threads else {})}
    path = write_study(tmp_path, runtime=runtime)
    study = load_study(path, storage=PG_URL if storage == "pg" else None)
    with pytest.raises(Exception, match=re.escape(match)) as err:
        check_request(study, JobRequest(**kwargs))
    assert type(err.value).__name__ == "AblateError"


def test_sqlite_multi_node_exits_2_naming_postgresql_and_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ABLATE_STORAGE", raising=False)
    path = write_study(tmp_path)
    assert main(["slurm", str(path), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "PostgreSQL" in err and "journal" in err and "--workers 1" in err
    assert not (tmp_path / "runs").exists()  # nothing written
    assert main(["slurm", str(path), "--workers", "1", "--dry-run"]) == 0  # one worker on SQLite is fine


@pytest.mark.parametrize("url,secrets", [
    ("postgresql://u:pw@h/db", ["pw"]),
    ("postgresql://u:p@ss@h/db", ["p@ss"]),
    ("postgresql://u@h/db?password=pw2&sslmode=require", ["pw2"]),
    ("postgresql://u:a@h/db?password=b", ["a", "b"]),
    ("postgresql://u@h/db", []),
    ("sqlite:///runs/x/optuna.db", []),
])
def test_secrets_of_a_url(url: str, secrets: list[str]) -> None:
    assert secrets_of(url) == secrets


def _fake_sbatch(folder: Path) -> Path:
    """An `sbatch` that records its argv and environment and answers like `sbatch --parsable`."""
    folder.mkdir()
    fake = folder / "sbatch"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {folder}/argv\nenv > {folder}/env\necho '4242;cluster'\n")
    fake.chmod(0o755)
    return fake


def test_submit_keeps_the_password_in_a_private_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    fake = _fake_sbatch(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ABLATE_STORAGE", PG_URL)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert main(["slurm", str(path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "submitted job 4242" in out and f"ablate status {path}" in out and PASSWORD not in out
    folder = tmp_path / "runs" / "tiny" / "slurm"
    script, env_file = folder / "array.sbatch", folder / "storage.env"
    assert (fake.parent / "argv").read_text().split() == ["--parsable", str(script)]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert env_file.read_text() == f"ABLATE_STORAGE={PG_URL}\nPGPASSWORD={PASSWORD}\n"
    assert PASSWORD not in script.read_text()
    sbatch_env = (fake.parent / "env").read_text()
    assert PASSWORD not in sbatch_env and "ABLATE_STORAGE" not in sbatch_env  # the job inherits no secret
    # what the script sources gives back the URL exactly (shell quoting of odd characters included)
    shown = subprocess.run(["bash", "-c", f'set -a; source {env_file}; set +a; printf %s "$ABLATE_STORAGE"'],
                           capture_output=True, text=True, check=True).stdout
    assert shown == PG_URL


# ----------------------------------------------------------------------------- the job in the ledger


def test_trials_record_their_slurm_array_task_and_status_shows_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert slurm_job() is None and worker_attrs("cpu") == {"worker_device": "cpu"}
    monkeypatch.setenv("SLURM_JOB_ID", "903")
    assert slurm_job() == "903"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "900")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert worker_attrs("cuda:0") == {"worker_device": "cuda:0", SLURM_ATTR: "900_3"}

    monkeypatch.chdir(tmp_path)
    study = load_study(write_study(tmp_path))
    final = optuna.create_study(study_name="tiny/final", storage=open_storage(study.storage))
    trial = final.ask({"arm": optuna.distributions.CategoricalDistribution(["cnn/none"])})
    final._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, f"node7:{os.getpid()}")
    for key, value in worker_attrs("cpu").items():
        trial.set_user_attr(key, value)
    frame = running_frame(study)
    assert frame[["worker", "slurm job", "device"]].values.tolist() == [[f"node7:{os.getpid()}", "900_3", "cpu"]]


# ----------------------------------------------------------------------------- SIGTERM at a safe point


def test_preemption_rules_on_a_fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"perf": 100.0, "mono": 50.0}
    monkeypatch.setattr("ablate.preempt.time.perf_counter", lambda: clock["perf"])
    monkeypatch.setattr("ablate.preempt.time.monotonic", lambda: clock["mono"])
    monkeypatch.setenv("ABLATE_STOP_WITHIN_S", "20")
    p = Preemption()
    with pytest.raises(Terminated):
        p.handle(signal.SIGTERM, None)  # outside a checkpointed run: at once
    with pytest.raises(Terminated):  # a request still pending when the run ends is not lost
        with p.deferred():
            p.handle(signal.SIGTERM, None)
    with p.deferred():
        p.at_step(5, 10, epoch_started=90.0)  # no request: nothing happens
        p.handle(signal.SIGTERM, None)
        p.at_step(5, 10, epoch_started=90.0)  # 5 steps in 10 s: 10 s more < 20 s budget: finish the epoch
        clock["mono"] += 12.0  # 12 s later, 8 s of budget left, the epoch needs 10 s more: stop now
        with pytest.raises(Terminated):
            p.at_step(5, 10, epoch_started=90.0)
        p.at_epoch_end()  # the request was used up
        p.handle(signal.SIGTERM, None)
        with pytest.raises(Terminated):
            p.at_epoch_end()
    monkeypatch.setenv("ABLATE_STOP_WITHIN_S", "soon")
    with pytest.raises(Exception, match="ABLATE_STOP_WITHIN_S"):
        with p.deferred():
            pass
    assert not p.deferring


@pytest.mark.parametrize("within,saved_epoch", [("60", 2), ("0", 1)])
def test_sigterm_mid_training_stops_at_the_next_safe_point_and_resumes_identically(
        within: str, saved_epoch: int, synthetic_small: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM (a real signal to this process) arrives after epoch 1: with time to spare the run finishes
    epoch 2, saves it and stops; with no time it stops at the next step, epoch 1's checkpoint standing.
    Resuming gives exactly the uninterrupted run's numbers."""
    monkeypatch.setenv("ABLATE_STOP_WITHIN_S", within)
    cnn, cpu, recipe = model_factory("cnn", "se"), Runtime(device="cpu", threads=1), Recipe(epochs=3)
    straight = train(cnn, synthetic_small, recipe, seed=5, runtime=cpu)
    path = tmp_path / "ck.pt"

    def term_after_first(epoch: int, metrics: dict) -> bool:
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    previous = install()
    try:
        with pytest.raises(Terminated):
            with PREEMPTION.deferred():
                train(cnn, synthetic_small, recipe, seed=5, runtime=cpu, checkpoint_path=path,
                      on_epoch_end=term_after_first)
    finally:
        uninstall(previous)
    assert torch.load(path, weights_only=True)["epoch"] == saved_epoch
    resumed = train(cnn, synthetic_small, recipe, seed=5, runtime=cpu, checkpoint_path=path)
    for key in ("train_loss", "val_acc", "test_acc", "lr"):
        assert getattr(resumed, key) == getattr(straight, key), key
