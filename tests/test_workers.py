"""Local workers get a GPU each (or share one when asked), and a study survives a host that dies mid-item."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import ablate.workers as workers_module
from ablate.cli import main
from ablate.contract import FAIL_ATTR, WORKER_ATTR
from ablate.errors import AblateError
from ablate.spec import load_study
from ablate.storage import open_storage, worker_host
from ablate.workers import describe_device, worker_gpus

from .conftest import record_popen, write_study


def fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(workers_module, "cuda_device_count", lambda: count)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def spawned_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *options: str) -> list[str | None]:
    """Run `ablate run --phases final OPTIONS` with workers faked; each worker's CUDA_VISIBLE_DEVICES."""
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    calls = record_popen(monkeypatch)
    assert main(["run", str(path), "--phases", "final", "--quiet", *options]) == 0
    return [env.get("CUDA_VISIBLE_DEVICES") for _, env in calls]


def test_four_workers_on_two_gpus_alternate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 2)
    assert spawned_gpus(tmp_path, monkeypatch, "--workers", "4", "--workers-per-gpu", "2") == ["0", "1", "0", "1"]


def test_workers_per_gpu_sets_the_default_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 3)
    assert spawned_gpus(tmp_path, monkeypatch, "--workers-per-gpu", "2") == ["0", "1", "2", "0", "1", "2"]


def test_chosen_gpus_are_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 4)
    assert spawned_gpus(tmp_path, monkeypatch, "--workers", "2", "--gpus", "1,3") == ["1", "3"]


def test_chosen_gpus_are_translated_through_the_parents_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's GPU 1 is physical GPU 5 when it was started with CUDA_VISIBLE_DEVICES=4,5,6,7."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert worker_gpus(2, [1, 3], None, 4) == ["5", "7"]


def test_no_gpu_leaves_cpu_workers_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    assert spawned_gpus(tmp_path, monkeypatch, "--workers", "3") == [None, None, None]


def test_cpu_study_on_a_gpu_host_is_not_placed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 2)
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, runtime={"device": "cpu"})
    calls = record_popen(monkeypatch)
    assert main(["run", str(path), "--phases", "final", "--quiet", "--workers", "3"]) == 0
    assert [env.get("CUDA_VISIBLE_DEVICES") for _, env in calls] == [None, None, None]


@pytest.mark.parametrize("options,words", [
    (["--workers", "3"], ["--workers 3", "2 GPU", "--workers-per-gpu", "--gpus"]),
    (["--workers", "5", "--workers-per-gpu", "2"], ["--workers 5", "--workers-per-gpu 2"]),
    (["--workers", "2", "--gpus", "0,2"], ["--gpus 0,2", "0 to 1"]),
    (["--workers", "2", "--gpus", "1,1"], ["--gpus 1,1", "distinct"]),
    (["--workers-per-gpu", "0"], ["--workers-per-gpu must be >= 1"]),
])
def test_placement_errors_exit_2_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                      options: list[str], words: list[str]) -> None:
    fake_gpus(monkeypatch, 2)
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    calls = record_popen(monkeypatch)
    assert main(["run", str(path), "--quiet", *options]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert calls == [] and not (tmp_path / "runs").exists()


def test_gpu_options_without_a_gpu_are_refused() -> None:
    with pytest.raises(AblateError, match="no CUDA GPU"):
        worker_gpus(2, None, 1, 0)


def test_describe_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert describe_device(torch.device("cuda:0")) == "cuda:0 (physical 2)"
    assert describe_device(torch.device("cpu")) == "cpu"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert describe_device(torch.device("cuda:1")) == "cuda:1"


def test_worker_host_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATE_HOST", "hostA")
    assert worker_host() == "hostA"


def test_trials_record_their_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, seeds=[0], runtime={"device": "cpu"})
    assert main(["run", str(path), "--quiet"]) == 0
    storage = open_storage(load_study(path).storage)
    for phase in ("profile", "final"):
        trials = optuna.load_study(study_name=f"tiny/{phase}", storage=storage).get_trials()
        assert trials and all(t.user_attrs["worker_device"] == "cpu" for t in trials)


# ----------------------------------------------------------------------------- two hosts, one killed


def _trials_of(url: str, name: str, host: str, states: tuple[TrialState, ...]) -> list[optuna.trial.FrozenTrial]:
    try:
        final = optuna.load_study(study_name=f"{name}/final", storage=open_storage(url))
    except KeyError:
        return []
    return [t for t in final.get_trials(states=states)
            if str(t.system_attrs.get(WORKER_ATTR, "")).startswith(f"{host}:")]


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_host_killed_mid_item_is_finished_by_the_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hostA dies mid-item (SIGKILL: no cleanup); hostB cannot see its pid, only its silent heartbeat,
    and after the grace period re-runs the item. Every item ends with exactly one COMPLETE trial."""
    url = os.environ.get("ABLATE_TEST_POSTGRES")
    if not url:
        pytest.skip("no PostgreSQL server: set ABLATE_TEST_POSTGRES=postgresql://... (.ci/run starts one)")
    pytest.importorskip("psycopg")
    monkeypatch.chdir(tmp_path)
    name = f"twohost{os.getpid()}"
    path = write_study(tmp_path, name=name, seeds=[0, 1, 2], runtime={"threads": 1},
                       dataset={"name": "synthetic", "train_size": 600, "test_size": 100, "augment": []},
                       recipe={"epochs": 3, "batch_size": 50})
    env = {**os.environ, "ABLATE_STORAGE": url, "ABLATE_HEARTBEAT_S": "1", "ABLATE_GRACE_S": "3"}
    monkeypatch.setenv("ABLATE_STORAGE", url)
    assert main(["run", str(path), "--phases", "profile", "--quiet"]) == 0  # timed once, before the workers
    cmd = [sys.executable, "-m", "ablate", "run", str(path), "--phases", "final", "--quiet"]
    a = subprocess.Popen(cmd, cwd=tmp_path, env={**env, "ABLATE_HOST": "hostA"})
    b = None
    try:
        _wait_for(lambda: _trials_of(url, name, "hostA", (TrialState.RUNNING,)), 120, "hostA to start an item")
        b = subprocess.Popen(cmd, cwd=tmp_path, env={**env, "ABLATE_HOST": "hostB"})
        _wait_for(lambda: _trials_of(url, name, "hostB", (TrialState.RUNNING, TrialState.COMPLETE)), 120,
                  "hostB to start an item")
        _wait_for(lambda: _trials_of(url, name, "hostA", (TrialState.RUNNING,)), 60, "hostA to be mid-item")
        a.send_signal(signal.SIGKILL)
        a.wait()
        killed = _trials_of(url, name, "hostA", (TrialState.RUNNING,))
        assert len(killed) == 1
        assert b.wait(timeout=180) == 0
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
    final = optuna.load_study(study_name=f"{name}/final", storage=open_storage(url))
    counts = Counter((t.params["arm"], t.params["seed"]) for t in final.get_trials(states=(TrialState.COMPLETE,)))
    study = load_study(path)
    assert counts == Counter({(arm.id, seed): 1 for arm in study.arms for seed in study.seeds})
    dead = final.get_trials()[killed[0].number]
    assert dead.state == TrialState.FAIL and FAIL_ATTR not in dead.user_attrs  # failed by the heartbeat reaper
    item = (dead.params["arm"], dead.params["seed"])
    redone = [t for t in final.get_trials(states=(TrialState.COMPLETE,)) if (t.params["arm"], t.params["seed"]) == item]
    assert str(redone[0].system_attrs[WORKER_ATTR]).startswith("hostB:")
