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
from ablate.datasets import Data, DataConfig, load_data
from ablate.preempt import PREEMPTION, Preemption, Terminated, install, uninstall
from ablate.recipe import Recipe, Runtime
from ablate.slurm import JobRequest, check_request, job_script, secrets_of
from ablate.spec import load_study
from ablate.status import running_frame
from ablate.storage import open_storage
from ablate.train import TrainResult, model_factory, train
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


def test_the_largest_array_slurm_accepts_by_default_is_written(tmp_path: Path) -> None:
    """MaxArraySize 1001: the largest index is 1000, so 1001 array tasks (0..1000) still pass."""
    study = load_study(write_study(tmp_path), storage=PG_URL)
    assert "#SBATCH --array=0-1000\n" in job_script(study, JobRequest(workers=1001), tmp_path, python="python3")


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
    ({"cpus_per_worker": 100_000}, "pg", None, "auto", "--cpus-per-worker must be from 1 to"),
    ({"gpus_per_worker": 2}, "pg", None, "auto", "a worker trains on one GPU"),
    ({"gpus_per_worker": -1}, "pg", None, "auto", "Allowed: 0 or 1"),
    ({"gpus_per_worker": 10**9}, "pg", None, "auto", "Allowed: 0 or 1"),
    # MaxArraySize 1001 (SLURM's default): indexes 0..1000, so 1002 workers need index 1001
    ({"workers": 1002}, "pg", None, "auto", "indexes would be 0..1001, but SLURM's default MaxArraySize (1001)"),
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


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # this test's own ask(), not ablate's
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
    with pytest.raises(Terminated), p.deferred():  # a request still pending when the run ends is not lost
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
    with pytest.raises(Exception, match="ABLATE_STOP_WITHIN_S"), p.deferred():
        pass
    assert not p.deferring


CNN, CPU1, THREE_EPOCHS = model_factory("cnn", "se"), Runtime(device="cpu", threads=1), Recipe(epochs=3, batch_size=40)


@pytest.fixture(scope="module")
def small_data() -> Data:
    return load_data(DataConfig(name="synthetic", train_size=300, test_size=60, val_fraction=0.2, augment=()))


@pytest.fixture(scope="module")
def straight(small_data: Data) -> TrainResult:
    return train(CNN, small_data, THREE_EPOCHS, seed=5, runtime=CPU1)


@pytest.mark.parametrize("within,saved_epoch", [("60", 2), ("0", 1)])
def test_sigterm_mid_training_stops_at_the_next_safe_point_and_resumes_identically(
        within: str, saved_epoch: int, small_data: Data, straight: TrainResult, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM (a real signal to this process) arrives after epoch 1: with time to spare the run finishes
    epoch 2, saves it and stops; with no time it stops at the next step, epoch 1's checkpoint standing.
    Resuming gives exactly the uninterrupted run's numbers."""
    monkeypatch.setenv("ABLATE_STOP_WITHIN_S", within)
    path = tmp_path / "ck.pt"

    def term_after_first(epoch: int, metrics: dict) -> bool:
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    previous = install()
    try:
        with pytest.raises(Terminated), PREEMPTION.deferred():
            train(CNN, small_data, THREE_EPOCHS, seed=5, runtime=CPU1, checkpoint_path=path,
                  on_epoch_end=term_after_first)
    finally:
        uninstall(previous)
    assert torch.load(path, weights_only=True)["epoch"] == saved_epoch
    resumed = train(CNN, small_data, THREE_EPOCHS, seed=5, runtime=CPU1, checkpoint_path=path)
    for key in ("train_loss", "val_acc", "test_acc", "lr"):
        assert getattr(resumed, key) == getattr(straight, key), key


# ----------------------------------------------------------------------------- a real SLURM (slow)

STUDY_DOC = {
    "dataset": {"name": "synthetic", "train_size": 600, "test_size": 100, "augment": [], "val_fraction": 0.2},
    "grid": {"backbones": ["cnn"], "attention": ["none", "se"], "positions": ["after_relu"], "reductions": [16]},
    "seeds": [0, 1],
    "recipe": {"epochs": 3, "batch_size": 40},
    "runtime": {"threads": 1},
    "measure": {"batch_sizes": [1, 8], "block_time": 0.005, "rounds": 3},
}
SLURM_SKIP = "no SLURM cluster running here (.ci/run's start_slurm starts a one-node one as root)"
PG_SKIP = "no PostgreSQL server: set ABLATE_TEST_POSTGRES=postgresql://... (.ci/run starts one)"


def _cluster_or_skip() -> str:
    """The PostgreSQL URL to test with, once SLURM and PostgreSQL are known to run; else the test is skipped."""
    if shutil.which("sbatch") is None:
        pytest.skip(f"{SLURM_SKIP}: sbatch not found")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if "UP" not in ping.stdout:
        pytest.skip(f"{SLURM_SKIP}: `scontrol ping` says {ping.stdout.strip() or ping.stderr.strip()!r}")
    url = os.environ.get("ABLATE_TEST_POSTGRES")
    if not url:
        pytest.skip(PG_SKIP)
    pytest.importorskip("psycopg")
    return url


def _secret_role(url: str, password: str) -> tuple[str, callable]:
    """A fresh login role with `password` (a string found nowhere else), as a URL; and how to drop it again.
    The CI role's password ('ablate') is a word that every ablate command line contains, so grepping for it
    proves nothing."""
    import sqlalchemy

    base = sqlalchemy.engine.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    role = f"ablate_slurm_{os.getpid()}"
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        db.exec_driver_sql(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")

    def drop() -> None:
        with engine.connect() as db:
            db.exec_driver_sql(f"REASSIGN OWNED BY {role} TO {base.username}")
            db.exec_driver_sql(f"DROP OWNED BY {role}")
            db.exec_driver_sql(f"DROP ROLE {role}")
        engine.dispose()

    return base.set(username=role, password=password).render_as_string(hide_password=False), drop


def _write(folder: Path, name: str, **overrides: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_study(folder, name=name, **{**STUDY_DOC, **overrides})


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], tuple[float, list, list]]:
    """(arm, seed) -> (test accuracy, per-epoch training loss, per-epoch test accuracy) of one uninterrupted
    single-worker run of STUDY_DOC (its own folder, checkpoints and SQLite file)."""
    import contextlib

    folder = tmp_path_factory.mktemp("reference")
    path = _write(folder, "slurmref")
    with contextlib.chdir(folder):
        assert main(["run", str(path), "--storage", f"sqlite:///{folder / 'ref.db'}", "--quiet"]) == 0
    return _results(f"sqlite:///{folder / 'ref.db'}", "slurmref")


def _final(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=f"{name}/final", storage=open_storage(url)).get_trials()
    except KeyError:
        return []


def _results(url: str, name: str) -> dict[tuple[str, int], tuple[float, list, list]]:
    return {(t.params["arm"], t.params["seed"]): (t.value, t.user_attrs[SERIES_ATTR]["train_loss"],
                                                 t.user_attrs[SERIES_ATTR]["test_acc"])
            for t in _final(url, name) if t.state == TrialState.COMPLETE}


def _wait_for(condition, timeout: float, what: str):
    """The first truthy value `condition()` returns, polled every 0.5 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _squeue_states(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, check=False).stdout


def _queued(job: str) -> bool:
    return bool(_squeue_states(job).strip())


def _submit(path: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ablate", "slurm", path.name, *args], cwd=path.parent, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return re.search(r"submitted job (\d+)", done.stdout).group(1)


def _running_in(url: str, name: str, task: str):
    """The RUNNING final trial of array task `task` that has finished at least one epoch, or None."""
    for t in _final(url, name):
        if t.state == TrialState.RUNNING and t.user_attrs.get(SLURM_ATTR) == task and t.intermediate_values:
            return t
    return None


def _visible_text(job: str) -> str:
    """Everything SLURM and the process table show about a job: squeue (every field), scontrol show job
    (details), and every process's command line."""
    out = [subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
           for cmd in (["squeue", "-h", "-j", job, "-o", "%all"], ["scontrol", "show", "job", "-d", job])]
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        with __import__("contextlib").suppress(OSError):
            out.append(proc.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(out)


@pytest.mark.slow
def test_slurm_array_task_cancelled_mid_item_every_item_once_identical(
        tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """A 2-task array on PostgreSQL; task 1 is scancelled after its item's first epoch. The study completes
    with every arm x seed once, each identical to the uninterrupted single-worker run, the cancelled item
    resumed from its checkpoint by task 0; the password is nowhere SLURM or ps shows."""
    base = _cluster_or_skip()
    password = f"Pw{os.getpid()}x{int(time.time())}"
    url, drop = _secret_role(base, password)
    name = f"slurmarr{os.getpid()}"
    path = _write(tmp_path / "job", name)
    env = {**os.environ, "ABLATE_STORAGE": url, "ABLATE_HEARTBEAT_S": "2", "ABLATE_GRACE_S": "10"}
    job = None
    try:
        start = time.monotonic()
        job = _submit(path, env, "--workers", "2")
        cancelled = _wait_for(lambda: _running_in(url, name, f"{job}_1"), 200, "task 1 to finish an epoch of an item")
        subprocess.run(["scancel", f"{job}_1"], check=True)
        visible = _visible_text(job)  # task 0 still runs
        assert f"ablate-{name}" in visible and password not in visible
        _wait_for(lambda: not _queued(job), 240, "the array to finish")
        seconds = time.monotonic() - start
    finally:
        if job is not None:
            subprocess.run(["scancel", job], capture_output=True, check=False)
        results, trials = _results(url, name), _final(url, name)
        drop()
    study = load_study(path)
    counts = Counter((t.params["arm"], t.params["seed"]) for t in trials if t.state == TrialState.COMPLETE)
    assert counts == Counter({(a.id, s): 1 for a in study.arms for s in study.seeds})
    assert results == reference  # value, per-epoch loss and test accuracy: bit for bit
    stopped = trials[cancelled.number]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs.get(RETRY_ATTR)  # SIGTERM: marked for re-run
    item = (stopped.params["arm"], stopped.params["seed"])
    redone = [t for t in trials if t.state == TrialState.COMPLETE and (t.params["arm"], t.params["seed"]) == item]
    assert redone[0].user_attrs[SLURM_ATTR] == f"{job}_0"
    logs = {p.name: p.read_text() for p in (path.parent / "runs" / name / "slurm").glob("*.out")}
    resumed = [int(m) for text in logs.values() for m in re.findall(r"resumed from epoch (\d+)", text)]
    # SIGTERM came after epoch 1 (the epoch it lands in is finished and saved, then the task stops: on a slow
    # machine that can be the last epoch, and the re-run then only reads the finished checkpoint)
    assert len(resumed) == 1 and 1 <= resumed[0] <= STUDY_DOC["recipe"]["epochs"]
    assert not any(password in text for text in logs.values())
    assert password not in (path.parent / "runs" / name / "slurm" / "array.sbatch").read_text()
    with capsys.disabled():
        print(f"\n[slurm figures] 2-task array, task 1 scancelled mid-item: {len(counts)} items x "
              f"{sorted(set(counts.values()))} complete each, identical to the single-worker run; cancelled item "
              f"resumed from epoch {resumed[0]} by {job}_0; submit -> complete {seconds:.0f} s")


@pytest.mark.slow
def test_slurm_sigterm_then_requeue_resumes_the_item_from_its_checkpoint(
        tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """`scancel --signal=TERM` mid-item: the task saves its checkpoint at the next safe point, marks its item
    for a re-run and exits; `scontrol requeue` (what SLURM does to a preempted --requeue job) restarts it,
    and it resumes from that checkpoint to the uninterrupted run's numbers."""
    url = _cluster_or_skip()
    name = f"slurmterm{os.getpid()}"
    path = _write(tmp_path / "job", name, seeds=[1])  # one task, two items: the first one is interrupted
    env = {**os.environ, "ABLATE_STORAGE": url}
    start = time.monotonic()
    job = _submit(path, env, "--workers", "1", "--requeue")
    task = f"{job}_0"
    try:
        _wait_for(lambda: _running_in(url, name, task), 200, "the task to finish an epoch")
        subprocess.run(["scancel", "--signal=TERM", task], check=True)
        _wait_for(lambda: not any(t.state == TrialState.RUNNING for t in _final(url, name)), 60,
                  "the task to stop at a safe point")
        checkpoints = list((path.parent / "runs" / name / "checkpoints").glob("*.pt"))
        saved = [torch.load(p, weights_only=True)["epoch"] for p in checkpoints]
        _wait_for(lambda: "RUNNING" not in _squeue_states(job), 60, "the task to end")
        requeue = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True, check=False)
        assert requeue.returncode == 0, requeue.stderr
        _wait_for(lambda: len(_results(url, name)) == 2 and not _queued(job), 240, "the requeued task to finish")
        seconds = time.monotonic() - start
    finally:
        subprocess.run(["scancel", job], capture_output=True, check=False)
    trials = _final(url, name)
    epochs = STUDY_DOC["recipe"]["epochs"]
    assert len(saved) == 1 and 1 <= saved[0] <= epochs  # stopped at an epoch boundary after epoch 1
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 1 and stopped[0].user_attrs.get(RETRY_ATTR)
    assert stopped[0].user_attrs[SLURM_ATTR] == task
    log = "".join(p.read_text() for p in (path.parent / "runs" / name / "slurm").glob("*.out"))
    assert "SIGTERM: stopping at the next safe point" in log
    assert re.findall(r"resumed from epoch (\d+)", log) == [str(saved[0])]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted((t.params["arm"], t.params["seed"]) for t in complete) == sorted(
        (a.id, 1) for a in load_study(path).arms)
    redone = next(t for t in complete if (t.params["arm"], t.params["seed"]) == (stopped[0].params["arm"], 1))
    assert redone.user_attrs[SLURM_ATTR] == task  # the same array task, requeued
    assert _results(url, name) == {k: v for k, v in reference.items() if k[1] == 1}  # as if never interrupted
    with capsys.disabled():
        print(f"\n[slurm figures] scancel --signal=TERM mid-item: checkpoint saved at epoch {saved[0]} of {epochs}, "
              f"item marked for re-run; scontrol requeue {task}: resumed from epoch {saved[0]}; submit -> complete "
              f"{seconds:.0f} s")
