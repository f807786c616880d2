"""Interleaved timing: the round/ratio/CI logic on a fake clock with a known answer, the warning for an
arm that does more work yet reads faster, and threads as part of a study's identity."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from ablate import columns, costs, rounds, timing
from ablate.arms import arms_from_names
from ablate.device import available_cores
from ablate.errors import AblateError
from ablate.models import build_model
from ablate.spec import load_study
from ablate.workers import warn_oversubscribed

TRUE_COST = {"none": 1.0e-3, "se": 1.25e-3, "cbam": 2.0e-3}


class DriftingMachine:
    """A fake clock: each arm's true time x a load that drifts over calls and jitters per call."""

    def __init__(self, drift: float = 1.5, jitter: float = 0.05, seed: int = 7) -> None:
        import numpy as np

        self.calls, self.drift, self.jitter = 0, drift, jitter
        self.rng = np.random.default_rng(seed)

    def load(self) -> float:
        # a slow ramp (another job starting) plus a fast wobble: what a shared machine does
        return 1.0 + self.drift * self.calls / 100 + 0.3 * math.sin(self.calls / 3.0)

    def time_block(self, name: str) -> float:
        self.calls += 1
        return TRUE_COST[name] * self.load() * (1 + self.jitter * float(self.rng.standard_normal()))


def test_ratio_under_drifting_load_comes_out_true_within_its_ci() -> None:
    machine = DriftingMachine()
    times = rounds.run_rounds(list(TRUE_COST), machine.time_block, rounds=30, seed=0)
    out = rounds.summarize_rounds(times, "none")
    for name, true in (("se", 1.25), ("cbam", 2.0)):
        s = out[name]
        assert s.ratio_ci_low <= true <= s.ratio_ci_high, (name, s.ratio_ci_low, s.ratio, s.ratio_ci_high)
        assert s.ratio == pytest.approx(true, rel=0.08)
        assert s.overhead_pct == pytest.approx((s.ratio - 1) * 100)
    assert out["none"].ratio is None and out["none"].overhead_ci_pct is None
    # the absolute medians carry the drift; that is why the overhead is not their ratio
    assert out["se"].iqr_s > 0.2 * out["se"].median_s


def test_arm_after_arm_timing_is_biased_where_interleaving_is_not() -> None:
    """The method this replaces: all of the baseline's blocks, then all of the arm's. Under a rising
    load the arm-after-arm ratio is far from the truth and outside the interleaved CI."""
    machine = DriftingMachine(jitter=0.0)
    sequential = {name: [machine.time_block(name) for _ in range(30)] for name in ("none", "se")}
    naive = rounds.summarize_rounds(sequential, "none")["se"]
    machine = DriftingMachine(jitter=0.0)
    fair = rounds.summarize_rounds(rounds.run_rounds(["none", "se"], machine.time_block, 30, seed=0), "none")["se"]
    assert not naive.ratio_ci_low <= 1.25 <= naive.ratio_ci_high
    assert fair.ratio_ci_low <= 1.25 <= fair.ratio_ci_high


def test_round_orders_are_fresh_permutations_and_reproducible() -> None:
    names = ["a", "b", "c", "d"]
    orders = rounds.round_orders(names, 20, seed=3)
    assert all(sorted(o) == names for o in orders)
    assert len({tuple(o) for o in orders}) > 5  # a fresh order per round
    assert orders == rounds.round_orders(names, 20, seed=3)
    assert orders != rounds.round_orders(names, 20, seed=4)


def test_median_ci_from_order_statistics() -> None:
    values = [float(v) for v in range(1, 11)]  # sorted 1..10
    low, high, coverage = rounds.median_ci(values)
    assert (low, high) == (2.0, 9.0)  # [x(2), x(9)] for n = 10
    assert coverage == pytest.approx(1 - 2 * (1 + 10) / 2**10)  # 1 - 2 P(Bin(10, .5) <= 1) = 0.9785
    low, high, coverage = rounds.median_ci([3.0, 1.0, 2.0])  # too few for 95%: the range, honest coverage
    assert (low, high) == (1.0, 3.0) and coverage == pytest.approx(0.75)


def test_faster_beyond_noise_needs_the_whole_ci_below_the_baseline() -> None:
    s = rounds.summarize_rounds({"none": [1.0] * 10, "a": [0.9, 1.1] * 5, "b": [0.8] * 10}, "none")
    assert not rounds.faster_beyond_noise(s["a"])  # ratios 0.9 and 1.1: the CI covers 1
    assert rounds.faster_beyond_noise(s["b"])  # every ratio 0.8


def test_rounds_must_align_with_the_baseline() -> None:
    with pytest.raises(AblateError, match="same rounds"):
        rounds.summarize_rounds({"none": [1.0, 1.0], "a": [1.0]}, "none")


def test_setting_rejects_values_that_cannot_work() -> None:
    for bad in ({"rounds": 0}, {"block_time": math.inf}, {"block_time": math.nan}, {"threads": 0},
                {"precision": "int8"}, {"cuda_graph": True}):
        with pytest.raises(AblateError):
            timing.Setting(**bad)


def test_overhead_text_marks_noise() -> None:
    assert columns.overhead_text(26.0, 19.0, 29.0) == "+26.0% [+19.0, +29.0]"
    assert columns.overhead_text(2.0, -1.0, 5.0) == "~+2.0% [-1.0, +5.0]"
    assert columns.overhead_text(None, None, None) == "-"


# ---------------------------------------------------------------------------------------------
# an arm that does more work but reads faster


def test_superset_is_detected_from_the_layers() -> None:
    base, se = build_model("cnn"), build_model("cnn", "se")
    assert costs.does_more_work(base, se)
    assert not costs.does_more_work(se, base)
    assert not costs.does_more_work(base, build_model("cnn"))


def test_superset_arm_reading_faster_gets_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_time_interleaved(blocks, setting, baseline):  # se 20% faster in every round: impossible
        times = {name: [1.0 if name == baseline else 0.8] * setting.rounds for name in blocks}
        return rounds.summarize_rounds(times, baseline), {"load_before": 0.1, "load_after": 0.2}

    monkeypatch.setattr(costs, "time_interleaved", fake_time_interleaved)
    arms = arms_from_names(["cnn"], ["none", "se"])
    rows, _ = costs.profile_backbone(arms, (3, 32, 32), setting=timing.Setting(rounds=10), batch_sizes=(1,))
    se = rows[1]
    assert se["latency_b1_overhead_pct"] == pytest.approx(-20.0)
    assert len(se["timing_warnings"]) == 1 and "strictly more work" in se["timing_warnings"][0]
    assert rows[0]["timing_warnings"] == []


def test_cli_profile_prints_the_warning(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from ablate.cli import main

    def fake_time_interleaved(blocks, setting, baseline):
        times = {name: [1.0 if name == baseline else 0.5] * setting.rounds for name in blocks}
        return rounds.summarize_rounds(times, baseline), {"load_before": None, "load_after": None}

    monkeypatch.setattr(costs, "time_interleaved", fake_time_interleaved)
    assert main(["profile", "--attention", "none,eca", "--batch-sizes", "1", "--train-batch", "0"]) == 0
    out, err = capsys.readouterr()
    assert "WARNING: cnn/eca" in out and "warning: cnn/eca" in err and "-50.0% [-50.0, -50.0]" in out


# ---------------------------------------------------------------------------------------------
# threads belong to the study


def _study(tmp_path: Path, **extra: object) -> Path:
    doc = {"name": "thr", "dataset": {"name": "synthetic"}, "grid": {"backbones": ["cnn"], "attention": ["none"]},
           **extra}
    path = tmp_path / "thr.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_threads_are_in_the_fingerprint(tmp_path: Path) -> None:
    one = load_study(_study(tmp_path, runtime={"threads": 1}))
    two = load_study(_study(tmp_path, runtime={"threads": 2}))
    assert one.fingerprint != two.fingerprint
    assert load_study(_study(tmp_path, runtime={"threads": 1}), threads=2).fingerprint == two.fingerprint
    timed = load_study(_study(tmp_path, runtime={"threads": 1}, measure={"threads": 2}))
    assert timed.fingerprint != one.fingerprint and timed.measure.threads == 2
    # unset training threads mean every core of this machine, and the fingerprint says how many that was
    auto = load_study(_study(tmp_path))
    cores = available_cores()
    assert auto.fingerprint == load_study(_study(tmp_path, runtime={"threads": cores})).fingerprint


def test_oversubscription_warns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cores = available_cores()
    study = load_study(_study(tmp_path, runtime={"threads": cores}))
    assert not warn_oversubscribed(study, 1)
    assert warn_oversubscribed(study, 2)
    assert "not lowered behind your back" in capsys.readouterr().err


def test_workers_keep_the_study_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ablate import workers as workers_mod

    commands = []

    class FakeProc:
        returncode = 0

        def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
            commands.append(cmd)

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(workers_mod.subprocess, "Popen", FakeProc)
    s = load_study(_study(tmp_path, runtime={"threads": 1}))
    workers_mod.spawn_workers(s, [None] * 3, ("final",), False, False, None, progress=False)  # 3 CPU workers
    assert len(commands) == 3 and all(c[c.index("--threads") + 1] == "1" for c in commands)
    commands.clear()
    workers_mod.spawn_workers(load_study(_study(tmp_path)), [None] * 2, ("final",), False, False, None, progress=False)
    assert all("--threads" not in c for c in commands)  # unset stays unset: same fingerprint in the child


def test_measure_section_rejects_values_that_cannot_work(tmp_path: Path) -> None:
    for bad, key in (({"block_time": float("inf")}, "block_time"), ({"block_time": float("nan")}, "block_time"),
                     ({"rounds": 0}, "rounds"), ({"precision": "int8"}, "precision"), ({"device": "tpu"}, "device")):
        with pytest.raises(AblateError, match=f"measure.{key}"):
            load_study(_study(tmp_path, measure=bad))
    assert load_study(_study(tmp_path, measure={"device": "cuda:1"})).measure.device == "cuda:1"
