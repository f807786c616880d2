"""Reliability: bad input never escapes as a traceback, injected faults are recorded, interrupts resume."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

import ablate.runner as runner_module
from ablate.attention import Attention
from ablate.cli import main
from ablate.contract import FAIL_ATTR, RETRY_ATTR
from ablate.errors import AblateError
from ablate.runner import run_study
from ablate.spec import load_study, parse_study
from ablate.storage import mask_url, open_storage
from ablate.train import NonFiniteLossError

from .conftest import GOOD, TINY, expected_items, final_counts, wait_for_running_final, write_imagefolder, write_study

# ----------------------------------------------------------------------------- bad input

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["all", "se", "cnn", "after_relu", "adam", "sqlite:///x"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=12)


def _mutations(doc: dict, draw_path: list[str], value: object) -> dict:
    out = yaml.safe_load(yaml.safe_dump(doc))
    node = out
    for key in draw_path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[draw_path[-1]] = value
    return out


KEY_PATHS = [["name"], ["seeds"], ["dataset", "name"], ["dataset", "train_size"], ["grid", "attention"],
             ["grid", "positions"], ["grid", "reductions"], ["grid", "stages"], ["grid", "knobs"],
             ["grid", "backbones"], ["recipe", "lr"], ["recipe", "optimizer"], ["tuning"], ["tuning", "space"],
             ["measure"], ["storage"], ["output"], ["runtime", "device"], ["unknown_key"]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(KEY_PATHS), value=values)
def test_mutated_study_documents_load_or_raise_ablate_error(path: list[str], value: object) -> None:
    doc = _mutations(GOOD, path, value)
    try:
        parse_study(doc, Path("fuzz.yaml"))
    except AblateError as err:
        assert "fuzz.yaml" in str(err)


@settings(max_examples=100, deadline=None)
@given(doc=values)
def test_random_documents_load_or_raise_ablate_error(doc: object) -> None:
    try:
        parse_study(doc, Path("random.yaml"))
    except AblateError as err:
        assert "random.yaml" in str(err)


@pytest.mark.parametrize("argv", [["run"], ["run", "x.yaml", "--bogus"], ["plan"], ["frobnicate"],
                                  ["profile", "--input"]])
def test_cli_usage_errors_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_output_path_cannot_escape(tmp_path: Path) -> None:
    for bad in ("../outside", "/etc/ablate", "reports/../../x"):
        doc = {**GOOD, "output": bad}
        with pytest.raises(AblateError, match="output"):
            parse_study(doc, tmp_path / "s.yaml")


def test_password_is_masked(tmp_path: Path, capsys) -> None:
    assert mask_url("postgresql://bob:s3cret@db/ablate") == "postgresql://bob:***@db/ablate"
    with pytest.raises(AblateError) as err:
        open_storage("postgresql://bob:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(err.value) and "***" in str(err.value)


def test_corrupt_sqlite_storage_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    db = tmp_path / "runs" / "tiny" / "optuna.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot open storage" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- injected faults


def _fail_for(attention: str, exc: BaseException):
    real = runner_module.train

    def fake(factory, data, recipe, **kwargs):
        model = factory(data.meta)
        if any(isinstance(m, Attention) and m.name == attention for m in model.modules()):
            raise exc
        return real(factory, data, recipe, **kwargs)

    return fake


@pytest.mark.parametrize(
    "exc,reason",
    [(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory"),
     (NonFiniteLossError(1, 3, float("nan")), "non-finite loss")],
)
def test_injected_failure_is_recorded_and_study_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          exc: BaseException, reason: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    monkeypatch.setattr(runner_module, "train", _fail_for("se", exc))
    run_study(load_study(path), progress=False)
    final = optuna.load_study(study_name="tiny/final", storage=open_storage(load_study(path).storage))
    failed = final.get_trials(states=(TrialState.FAIL,))
    assert {t.params["arm"] for t in failed} == {"cnn/se/after_relu/r16/s1-3"} and len(failed) == 2
    assert all(reason in t.user_attrs[FAIL_ATTR] for t in failed)
    assert {t.params["arm"] for t in final.get_trials(states=(TrialState.COMPLETE,))} == {"cnn/none"}
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    run_study(load_study(path), progress=False)  # failures of the arm itself are not retried...
    assert len(final.get_trials(states=(TrialState.FAIL,))) == 2
    run_study(load_study(path), progress=False, retry_failed=True)  # ...unless asked
    assert set(final_counts(path)) == expected_items(path)


def test_missing_dataset_stops_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, dataset={"name": "fashion-mnist"})
    assert main(["run", str(path), "--quiet", "--data-dir", str(tmp_path / "nodata")]) == 2
    err = capsys.readouterr().err
    assert "fashion-mnist" in err and "make data" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_vanished_dataset_fails_items_and_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dataset was there when the run started and is gone when a worker loads it."""
    monkeypatch.chdir(tmp_path)
    folder = write_imagefolder(tmp_path / "imgs", per_class=12)
    path = write_study(tmp_path, dataset={"name": f"imagefolder:{folder}", "val_fraction": 0.0},
                       recipe={"epochs": 1, "batch_size": 16, "scheduler": "none"})
    run_study(load_study(path), progress=False, phases=("profile",))
    shutil.rmtree(folder)
    run_study(load_study(path), progress=False, phases=("final",))  # a worker starting after the loss
    storage = open_storage(load_study(path).storage)
    final = optuna.load_study(study_name="tiny/final", storage=storage)
    failed = final.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 4 and all(t.user_attrs[RETRY_ATTR] and "imgs" in t.user_attrs[FAIL_ATTR] for t in failed)
    write_imagefolder(folder, per_class=12)  # back again: the next run completes every item
    run_study(load_study(path), progress=False)
    assert set(final_counts(path)) == expected_items(path) and set(final_counts(path).values()) == {1}


# ----------------------------------------------------------------------------- processes


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_marks_trial_and_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int,
                                         code: int) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, recipe={"epochs": 6, "batch_size": 50})
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--quiet"], cwd=tmp_path)
    wait_for_running_final(tmp_path / "runs" / "tiny" / "optuna.db")
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == code
    final = optuna.load_study(study_name="tiny/final", storage=open_storage(load_study(path).storage))
    assert not final.get_trials(states=(TrialState.RUNNING,))
    interrupted = final.get_trials(states=(TrialState.FAIL,))
    assert interrupted and all(t.user_attrs.get(RETRY_ATTR) for t in interrupted)
    assert main(["run", str(path), "--quiet"]) == 0
    assert set(final_counts(path).values()) == {1}


@pytest.mark.slow
def test_writer_survives_a_concurrent_dashboard_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, seeds=[0, 1, 2])
    url = load_study(path).storage
    open_storage(url)  # creates the file
    stop, reads = threading.Event(), [0]

    def reader() -> None:  # what optuna-dashboard does: poll every study and its trials
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
        while not stop.is_set():
            for summary in optuna.get_all_study_summaries(storage=storage):
                optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
            reads[0] += 1

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        assert main(["run", str(path), "--quiet", "--workers", "2"]) == 0
    finally:
        stop.set()
        thread.join(timeout=30)
    assert reads[0] > 5
    assert set(final_counts(path).values()) == {1} and set(final_counts(path)) == expected_items(path)


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_load_four_workers_24_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str, capsys) -> None:
    """24 short trials on 4 workers: none lost, none duplicated; prints wall time vs 1 worker."""
    monkeypatch.chdir(tmp_path)
    grid = {**TINY["grid"], "attention": ["none", "se", "eca", "sam", "simam", "cam"]}
    walls = {}
    for workers in (1, 4):
        name = f"load{workers}{storage}"
        url = f"journal:runs/{name}/journal.log" if storage == "journal" else None
        path = write_study(tmp_path, name=name, grid=grid, seeds=[0, 1, 2, 3],
                           dataset={"name": "synthetic", "train_size": 100, "test_size": 50, "augment": []})
        args = ["run", str(path), "--quiet", "--workers", str(workers)] + (["--storage", url] if url else [])
        start = time.perf_counter()  # a fresh process each time, so both pay the same start-up
        assert subprocess.run([sys.executable, "-m", "ablate", *args], cwd=tmp_path).returncode == 0
        walls[workers] = time.perf_counter() - start
        counts = final_counts(path, url)
        assert len(counts) == 24 and set(counts.values()) == {1}
    with capsys.disabled():
        print(f"\n[load {storage}] 24 trials: 1 worker {walls[1]:.1f} s, 4 workers {walls[4]:.1f} s, "
              f"speed-up {walls[1] / walls[4]:.2f}x")


# ----------------------------------------------------------------------------- the closing summary and exit code


def test_run_exits_1_when_items_fail_and_says_what_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    real_train = runner_module.train
    monkeypatch.setattr(runner_module, "train", _fail_for("se", NonFiniteLossError(1, 3, float("nan"))))
    assert main(["run", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "final 2/4 items complete, 2 failed" in err and "2 item(s) failed in this run" in err
    assert f"ablate run {path} --retry-failed" in err
    assert main(["run", str(path), "--quiet"]) == 0  # nothing failed in this run: earlier failures, not retried
    assert "final 2/4 items complete, 2 failed" in capsys.readouterr().err
    monkeypatch.setattr(runner_module, "train", real_train)
    assert main(["run", str(path), "--quiet", "--retry-failed"]) == 0  # the earlier failures ran again and completed
    err = capsys.readouterr().err
    assert "final 4/4 items complete." in err and f"next: ablate report {path}" in err


def test_every_item_failing_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(runner_module, "train", out_of_memory)
    assert main(["run", str(path), "--quiet"]) == 1
    assert "final 0/4 items complete, 4 failed" in capsys.readouterr().err


_RACE_OPEN = """
import sys, time
from ablate.storage import open_storage
start = float(sys.argv[2])
while time.time() < start:
    pass
open_storage(sys.argv[1])
"""


def test_first_opens_of_a_fresh_sqlite_file_race_safely(tmp_path: Path) -> None:
    """Several processes creating one new database's tables at the same moment all get a storage."""
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        start = time.time() + 3.0
        procs = [subprocess.Popen([sys.executable, "-c", _RACE_OPEN, url, str(start)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [proc.communicate(timeout=120)[1] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0, 0], errors
