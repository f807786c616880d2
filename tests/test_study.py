"""Studies end to end on synthetic data: a full run, resume after SIGKILL, several workers, PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState, create_trial

from ablate.cli import main
from ablate.contract import WORKER_ATTR, is_ignored, storage_of, study_id_of
from ablate.planning import tuning_groups
from ablate.runner import TunedParams, name_objective, run_study
from ablate.spec import load_study
from ablate.status import status_frame
from ablate.storage import open_storage, optuna_info_off, reap_dead_trials, worker_host
from ablate.workqueue import item_distribution

from .conftest import TINY, expected_items, final_counts, wait_for_running_final, write_study


@pytest.mark.filterwarnings("error::optuna.exceptions.ExperimentalWarning")  # heartbeats, metric names: scoped
def test_two_arms_two_seeds_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, tuning={"enabled": True, "n_trials": 2, "epochs": 1,
                                          "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}})
    run_study(load_study(path), progress=False)
    counts = final_counts(path)
    assert set(counts) == expected_items(path) and set(counts.values()) == {1}
    study = load_study(path)
    storage = open_storage(study.storage)
    final = optuna.load_study(study_name="tiny/final", storage=storage)
    trial = final.get_trials(states=(TrialState.COMPLETE,))[0]
    for key in ("final_acc", "checkpoint", "hyperparameters", "params", "macs_full", "hp.lr"):
        assert key in trial.user_attrs
    assert "cost" not in trial.user_attrs  # the cost row is stored once, on the profile trial
    for key in ("eval_acc", "val_acc", "epoch_time_s", "iter_loss", "test_correct"):  # lists: one attribute
        assert key in trial.user_attrs["series"] and key not in trial.user_attrs
    assert list(trial.intermediate_values.values()) == trial.user_attrs["series"]["val_acc"]  # learning curve
    assert trial.value == trial.user_attrs["final_acc"]
    assert "lr" in trial.user_attrs["hyperparameters"]  # tuned value used
    assert trial.user_attrs["params"] == trial.user_attrs["n_params"]
    assert Path(trial.user_attrs["checkpoint"]).is_file()
    tune = optuna.load_study(study_name="tiny/tune/cnn/none", storage=storage)
    assert len(tune.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 2
    # re-running is a no-op: nothing is trained twice
    run_study(load_study(path), progress=False)
    assert set(final_counts(path).values()) == {1}
    frame = status_frame(study).set_index("phase")
    assert frame.loc["tiny/final", "complete"] == 4 and frame.loc["tiny/final", "items_left"] == 0
    loads: list[str] = []  # each tuning group's study is read once per run, however many items ask
    load = optuna.load_study
    monkeypatch.setattr(optuna, "load_study", lambda **kw: loads.append(kw["study_name"]) or load(**kw))
    tuned = TunedParams(study, storage)
    answers = [tuned(arm) for arm in study.arms for _ in study.seeds]
    assert sorted(loads) == sorted(set(loads)) and len(loads) == len(tuning_groups(study))
    assert answers[0][0] == dict(tune.best_trial.params) and "own tuning (2 trials" in answers[0][1]


def test_opening_storage_changes_no_global_state(tmp_path: Path) -> None:
    """A library call leaves the process's warning filters and Optuna's log level as it found them."""
    level = optuna.logging.get_verbosity()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what Optuna marks experimental is used knowingly, and says nothing
        filters = list(warnings.filters)
        storage = open_storage(f"sqlite:///{tmp_path / 'x.db'}")
        study = optuna.create_study(study_name="x", storage=storage)
        name_objective(study, "test accuracy (%)")
        reap_dead_trials(study)
        assert list(warnings.filters) == filters
    assert optuna.logging.get_verbosity() == level
    with optuna_info_off():
        assert optuna.logging.get_verbosity() == max(level, optuna.logging.WARNING)
    assert optuna.logging.get_verbosity() == level


def test_changed_spec_and_name_clash_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    assert main(["run", str(path), "--phases", "profile", "--quiet"]) == 0
    path.write_text(yaml.safe_dump({**TINY, "seeds": [0, 1, 2]}))
    assert main(["run", str(path), "--phases", "profile", "--quiet"]) == 2
    assert "study file changed" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "seeds": [5]}))
    assert main(["run", str(other / "tiny.yaml"), "--phases", "profile", "--quiet",
                 "--storage", "sqlite:///runs/tiny/optuna.db"]) == 2
    assert "another file" in capsys.readouterr().err
    assert main(["run", str(path), "--phases", "profile", "--quiet", "--allow-changed-spec"]) == 0


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, recipe={"epochs": 4, "batch_size": 50})
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--quiet"], cwd=tmp_path)
    wait_for_running_final(tmp_path / "runs" / "tiny" / "optuna.db")
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sum(final_counts(path).values()) < 4
    assert main(["run", str(path), "--quiet"]) == 0
    counts = final_counts(path)
    assert set(counts) == expected_items(path) and set(counts.values()) == {1}
    final = optuna.load_study(study_name="tiny/final", storage=open_storage(load_study(path).storage))
    reaped = [t for t in final.trials if t.state == TrialState.FAIL]
    assert reaped and all(is_ignored(t) for t in reaped)  # the killed trial is marked, not counted
    # one checkpoint per arm x seed: the re-run resumed the killed item's file instead of starting another
    assert len(list((tmp_path / "runs" / "tiny" / "checkpoints").glob("*.pt"))) == 4


def _run_workers(tmp_path: Path, path: Path, storage: str | None = None) -> None:
    args = ["run", str(path), "--workers", "3", "--quiet"] + (["--storage", storage] if storage else [])
    assert main(args) == 0
    counts = final_counts(path, storage)
    assert set(counts) == expected_items(path) and set(counts.values()) == {1}


@pytest.mark.slow
def test_three_workers_sqlite_no_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    grid = {**TINY["grid"], "attention": ["none", "se", "eca"]}
    _run_workers(tmp_path, write_study(tmp_path, grid=grid))


@pytest.mark.slow
def test_three_workers_journal_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    grid = {**TINY["grid"], "attention": ["none", "se", "eca"]}
    _run_workers(tmp_path, write_study(tmp_path, grid=grid), storage="journal:runs/tiny/journal.log")


def _postgres_url() -> str | None:
    """A server the test may write to: only one named explicitly (.ci/run starts one and names it)."""
    return os.environ.get("ABLATE_TEST_POSTGRES") or None


@pytest.mark.slow
def test_three_workers_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server: set ABLATE_TEST_POSTGRES=postgresql://... (.ci/run starts one)")
    pytest.importorskip("psycopg")
    monkeypatch.chdir(tmp_path)
    name = f"pg{os.getpid()}"
    grid = {**TINY["grid"], "attention": ["none", "se", "eca"]}
    path = write_study(tmp_path, name=name, grid=grid)
    _run_workers(tmp_path, path, storage=url)


# ----------------------------------------------------------------------------- status is read-only


def test_status_of_a_study_never_run_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    assert main(["status", str(path)]) == 0
    assert "not run yet" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
    assert main(["status", str(path), "--storage", "journal:runs/j/journal.log"]) == 0
    assert "not run yet" in capsys.readouterr().out and not (tmp_path / "runs").exists()


def _running_claim(final: optuna.Study, worker: str, seed: int) -> int:
    """A RUNNING trial of item (cnn/none, seed) as a worker `worker` (host:pid) would have claimed it."""
    claim = create_trial(state=TrialState.RUNNING, params={"arm": "cnn/none", "seed": seed},
                         distributions={"arm": item_distribution(["cnn/none"]), "seed": item_distribution([seed])},
                         system_attrs={WORKER_ATTR: worker}, user_attrs={"worker_device": "cuda:0 (physical 2)"})
    return storage_of(final).create_new_trial(study_id_of(final), template_trial=claim)


def test_status_shows_dead_workers_without_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATE_GRACE_S", "1")
    path = write_study(tmp_path)
    study = load_study(path)
    final = optuna.create_study(study_name="tiny/final", storage=open_storage(study.storage), direction="maximize")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _running_claim(final, f"{worker_host()}:{int(gone.stdout)}", 0)  # a local process that has exited
    _running_claim(final, f"{worker_host()}:{os.getpid()}", 1)  # this live process
    silent = _running_claim(final, "elsewhere:1", 2)  # another host: only its heartbeat tells
    storage_of(final).record_heartbeat(silent)
    time.sleep(2.5)  # > the 1 s grace period (the database clock counts whole seconds)
    db = tmp_path / "runs" / "tiny" / "optuna.db"
    before = db.read_bytes()
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert db.read_bytes() == before
    rows = {line.split("|")[1].strip() + "/" + line.split("|")[3].strip(): line for line in out.splitlines()
            if line.startswith("| tiny/final") and "seed=" in line}
    assert "dead" in rows["tiny/final/arm=cnn/none seed=0"] and "running" in rows["tiny/final/arm=cnn/none seed=1"]
    assert "dead" in rows["tiny/final/arm=cnn/none seed=2"]
    assert all("cuda:0 (physical 2)" in line for line in rows.values())
    frame = status_frame(study).set_index("phase")
    assert frame.loc["tiny/final", "running"] == 1 and frame.loc["tiny/final", "dead"] == 2
    assert len(final.get_trials(states=(TrialState.RUNNING,))) == 3  # still RUNNING in storage: status wrote nothing


def test_status_counts_a_dead_workers_item_as_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial whose worker died still holds its item in storage, but the next run re-runs it: left to do."""
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    study = load_study(path)
    final = optuna.create_study(study_name="tiny/final", storage=open_storage(study.storage), direction="maximize")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _running_claim(final, f"{worker_host()}:{int(gone.stdout)}", 0)  # a local process that has exited
    _running_claim(final, f"{worker_host()}:{os.getpid()}", 1)  # this live process: its item is taken
    row = status_frame(study).set_index("phase").loc["tiny/final"]
    assert row["dead"] == 1 and row["running"] == 1 and row["complete"] == 0
    assert row["items_left"] == row["items"] - 1
