"""Worker start-up figures and the scaling benchmark's pieces (the timed runs themselves are not tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ablate.bench import SCALING_ATTENTION, SCALING_SEEDS, scaling_study, steady_rate
from ablate.datasets import CACHE_ENV, DataConfig
from ablate.errors import AblateError
from ablate.planning import final_items
from ablate.recipe import Runtime
from ablate.spec import parse_study
from ablate.startup import DECODED, DECODED_CACHED, FROM_CACHE, LAUNCH_ENV, Startup, process_age_s, timed_load
from ablate.startup_probe import measure_startup


def test_process_age_counts_from_the_process_start() -> None:
    code = "import time; time.sleep(0.5); from ablate.startup import process_age_s; print(process_age_s())"
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - t0
    assert 0.5 <= float(out) <= wall + 0.05  # /proc's start time has 10 ms ticks


def test_process_age_falls_back_to_the_launch_stamp(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(self: Path) -> str:
        raise OSError("no /proc here")

    monkeypatch.setattr(Path, "read_text", no_proc)
    monkeypatch.setenv(LAUNCH_ENV, repr(time.time() - 5.0))
    assert process_age_s() == pytest.approx(5.0, abs=0.5)
    monkeypatch.delenv(LAUNCH_ENV)
    assert process_age_s() is None


def test_timed_load_says_where_the_dataset_came_from(cifar10_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    config = DataConfig(name="cifar10", val_fraction=0.0)
    assert [timed_load(config, cifar10_root)[1].data_from for _ in range(2)] == [DECODED_CACHED, FROM_CACHE]
    monkeypatch.setenv(CACHE_ENV, "off")
    data, startup = timed_load(config, cifar10_root)
    assert startup.data_from == DECODED and len(data.train) == 100 and startup.data_s > 0


def test_start_up_excludes_work_done_before_the_dataset_load(cifar10_root: Path) -> None:
    """A worker's first process runs the profile phase before it loads the dataset: the start-up line counts
    the process's age when start-up ended (the runner's import of ablate.startup), not at the load."""
    code = ("import time; from ablate.startup import IMPORTED_S, timed_load; from ablate.datasets import DataConfig; "
            "time.sleep(1.5); import sys; "  # stands for the profile phase
            "print(IMPORTED_S, timed_load(DataConfig(name='cifar10', val_fraction=0.0), sys.argv[1])[1].process_s)")
    out = subprocess.run([sys.executable, "-c", code, str(cifar10_root)], capture_output=True, text=True,
                         check=True).stdout.split()
    imported, process_s = float(out[0]), float(out[1])
    assert process_s == imported  # taken where start-up ended, before the 1.5 s of "phase work"
    _, explicit = timed_load(DataConfig(name="cifar10", val_fraction=0.0), cifar10_root, ready_s=0.25)
    assert explicit.process_s == 0.25


def test_measure_startup_times_the_first_steps(cifar10_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, "off")
    s = measure_startup(DataConfig(name="cifar10", val_fraction=0.0), cifar10_root,
                        runtime=Runtime(device="cpu", threads=1), batch_size=16)
    assert s.process_s is not None and s.process_s > 0 and s.first_step_s > 0 and s.step_s > 0
    assert s.total_s == pytest.approx(s.process_s + s.data_s + s.deferred_import_s + s.first_step_s)
    line = Startup(2.5, 0.04, FROM_CACHE, 1.0, 0.2, 0.05).line()
    assert line == ("start-up 3.74 s: interpreter + imports 2.50 s, dataset 0.04 s (memory-mapped cache), "
                    "torch._dynamo import 1.00 s, first training step 0.20 s (then 50 ms per step)")


def test_steady_rate_counts_completions_after_the_first() -> None:
    t0 = datetime(2024, 1, 1, 12, 0, 0)
    # the first item finishes late (start-up); three more follow, 10 s apart: 3 items in 30 s
    assert steady_rate([t0 + timedelta(seconds=s) for s in (30, 0, 10, 20)]) == pytest.approx(6.0)
    with pytest.raises(AblateError, match="at least two"):
        steady_rate([t0])


def test_scaling_study_is_a_valid_study_of_24_final_items(tmp_path: Path) -> None:
    doc = scaling_study("bench-scaling-w2", "fashion-mnist", 2000, 500)
    study = parse_study(doc, tmp_path / "study.yaml", threads=1)
    assert len(final_items(study)) == len(SCALING_ATTENTION) * SCALING_SEEDS == 24
    assert study.recipe.epochs == 1 and not study.tuning.enabled and study.dataset.train_size == 2000
