"""Precision-targeted seeds: arms whose paired difference is already precise stop at `min`, noisy
ones go on to `max`; the rule reads precision, never p-values; interrupted and rerun, every arm x
seed still trains exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ablate import runner as runner_mod
from ablate.contract import final_results, is_ignored
from ablate.planning import final_items, wanted_seeds
from ablate.runner import run_study
from ablate.spec import load_study
from ablate.storage import open_storage
from ablate.train import TrainResult

PLAN = {"min": 3, "max": 6, "target_ci_pp": 0.5}
DOC = {
    "name": "adapt",
    "dataset": {"name": "synthetic", "train_size": 300, "test_size": 100, "augment": []},
    "grid": {"backbones": ["cnn"], "attention": ["none", "se", "eca"]},
    "seeds": PLAN,
    "recipe": {"epochs": 1, "batch_size": 50, "scheduler": "none"},
    "measure": {"batch_sizes": [1], "block_time": 0.002, "rounds": 2, "train_step": False},
}
BASE, SE, ECA = "cnn/none", "cnn/se/after_relu/r16/s1-3", "cnn/eca/after_relu/s1-3"
# se: a large, steady effect (+3 pp +- 0.1 every seed); eca: differences that swing by several pp
ACC = {BASE: [80.0, 81.0, 79.0, 80.5, 80.0, 79.5], SE: [83.0, 84.1, 81.9, 83.5, 83.0, 82.5],
       ECA: [84.0, 77.0, 83.0, 76.0, 84.5, 75.0]}


def _study(tmp_path: Path) -> Path:
    path = tmp_path / "adapt.yaml"
    path.write_text(yaml.safe_dump(DOC))
    return path


def test_wanted_seeds_stops_on_precision(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path))
    assert {k: sorted(v) for k, v in wanted_seeds(study, {}).items()} == {a: [0, 1, 2] for a in ACC}
    results = {arm: {s: acc[s] for s in range(3)} for arm, acc in ACC.items()}
    wanted = wanted_seeds(study, results)
    assert sorted(wanted[SE]) == [0, 1, 2]  # half-width of +3.0, +3.1, +2.9 is 0.25 pp < 0.5: done
    assert sorted(wanted[ECA]) == [0, 1, 2, 3]  # noisy: one more seed, and the baseline gets it too (paired)
    assert sorted(wanted[BASE]) == [0, 1, 2, 3]
    results = {arm: {s: acc[s] for s in range(6)} for arm, acc in ACC.items()}
    assert sorted(wanted_seeds(study, results)[ECA]) == [0, 1, 2, 3, 4, 5]  # up to max, never beyond


def test_zero_spread_is_not_taken_as_precision(tmp_path: Path) -> None:
    """Identical differences at 3 seeds are floored by the test set's binomial noise: not 'precise'."""
    study = load_study(_study(tmp_path))
    results = {BASE: {0: 80.0, 1: 81.0, 2: 79.0}, SE: {0: 83.0, 1: 84.0, 2: 82.0}, ECA: {0: 80.0, 1: 81.0, 2: 79.0}}
    assert sorted(wanted_seeds(study, results)[SE]) == [0, 1, 2, 3]


def test_the_rule_ignores_p_values(tmp_path: Path) -> None:
    """Shifting every difference by a constant changes p-values, not precision: same decision."""
    study = load_study(_study(tmp_path))
    results = {arm: {s: acc[s] for s in range(3)} for arm, acc in ACC.items()}
    shifted = {**results, ECA: {s: v + 10.0 for s, v in results[ECA].items()}}
    assert wanted_seeds(study, results) == wanted_seeds(study, shifted)


def _fake_train(calls: Counter, stop_after: int | None = None):
    def train(factory: Any, data: Any, recipe: Any, *, seed: int, **kwargs: Any) -> TrainResult:
        if stop_after is not None and sum(calls.values()) >= stop_after:
            raise KeyboardInterrupt  # killed mid-study
        arm = {"none": BASE, "se": SE, "eca": ECA}[factory["attention"]]  # the fake factory: build kwargs
        calls[(arm, seed)] += 1
        acc = ACC[arm][seed]
        return TrainResult("cpu", 1, seed, "test", 1, train_loss=[1.0], train_acc=[50.0], val_loss=[1.0],
                           val_acc=[acc], test_loss=[1.0], test_acc=[acc], lr=[1e-3], epoch_time_s=[0.1],
                           train_time_s=[0.1], samples_per_s=[100.0])
    return train


def test_adaptive_final_phase_end_to_end_and_exactly_once_after_a_kill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _study(tmp_path)
    calls: Counter = Counter()
    run_study(load_study(path), progress=False, phases=("profile",))
    monkeypatch.setattr(runner_mod, "model_factory", lambda **kwargs: kwargs)
    monkeypatch.setattr(runner_mod, "train", _fake_train(calls, stop_after=7))
    with pytest.raises(KeyboardInterrupt):
        run_study(load_study(path), progress=False, phases=("final",))
    monkeypatch.setattr(runner_mod, "train", _fake_train(calls))
    run_study(load_study(path), progress=False, phases=("final",))

    study = load_study(path)
    final = optuna.load_study(study_name="adapt/final", storage=open_storage(study.storage))
    complete = Counter((t.params["arm"], t.params["seed"]) for t in final.get_trials(deepcopy=False)
                       if t.state == TrialState.COMPLETE and not is_ignored(t))
    assert set(complete.values()) == {1}  # every item once
    assert sorted(s for a, s in complete if a == SE) == [0, 1, 2]  # stopped early
    assert sorted(s for a, s in complete if a == ECA) == [0, 1, 2, 3, 4, 5]  # went to max
    assert sorted(s for a, s in complete if a == BASE) == [0, 1, 2, 3, 4, 5]  # paired with the noisy arm
    assert set(calls.values()) == {1}  # nothing trained twice, the interrupted item included
    assert len(final_items(study, final_results(final))) == 15
