"""Storage -> pandas: everything a report shows, read from the study's Optuna storage alone.

Reading never creates or changes anything in storage (a report may run beside live workers). Each
arm x seed of the study file is classified as complete, failed (with its reason), running or
missing, so a partial study still reports, and says what it lacks. Duplicate claims and trials of
dead workers (`ablate.contract.is_ignored`) are not results and are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ..columns import batch_sizes_of
from ..contract import (
    ENV_ATTR,
    FAIL_ATTR,
    FINAL_KEYS,
    ROUNDS_ATTR,
    SERIES_ATTR,
    claimed,
    profile_costs,
    profile_trials,
    results_of,
)
from ..errors import AblateError
from ..planning import phase_name, tuning_groups, wanted_seeds
from ..spec import Study
from ..storage import mask_url, open_storage, storage_file

FACTORS = ("arm", "backbone", "attention", "position", "reduction", "stages", "knobs")
CURVE_KEYS = ("train_loss", "train_acc", "eval_loss", "eval_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr",
              "epoch_time_s", "train_time_s")


@dataclass(frozen=True)
class Collected:
    """One study's results as frames; every report number comes from here."""

    study: Study
    arms: pd.DataFrame  # one row per arm of the study file: factors + cost (profile phase)
    runs: pd.DataFrame  # one row per complete final trial (arm x seed)
    curves: pd.DataFrame  # long: arm, seed, epoch, train/eval loss and accuracy, times
    iters: pd.DataFrame  # long: arm, seed, step, loss (sampled per-iteration training loss)
    items: pd.DataFrame  # every arm x seed of the study file: status, trial number, fail reason
    tuning: dict[str, optuna.Study] = field(default_factory=dict)  # group -> tuning study (existing ones)
    attrs: dict[str, Any] = field(default_factory=dict)  # the final study's user attrs
    extra_arms: tuple[str, ...] = ()  # arms with results in storage that the study file no longer has
    timing: dict[str, dict[str, Any]] = field(default_factory=dict)  # backbone -> per-round record (host, rounds)
    final: optuna.Study | None = None  # the final phase's Optuna study, where the dashboard note and figures go

    @property
    def eval_split(self) -> str:
        return str(self.runs["eval_split"].iloc[0]) if len(self.runs) and "eval_split" in self.runs else "test"

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Batch sizes that latency was measured at, ascending."""
        return batch_sizes_of(self.arms)


def _load(name: str, storage: optuna.storages.BaseStorage, names: set[str]) -> optuna.Study | None:
    return optuna.load_study(study_name=name, storage=storage) if name in names else None


def collect(study: Study) -> Collected:
    """Read a study's storage into frames. Raises AblateError when the storage holds nothing of it."""
    path = storage_file(study.storage)
    if path is not None and not path.is_file():
        raise AblateError(f"{study.path}: storage {mask_url(study.storage)} does not exist; run "
                          f"`ablate run {study.path}` first (or pass --storage).")
    storage = open_storage(study.storage)
    names = set(optuna.get_all_study_names(storage=storage))
    profile = _load(phase_name(study, "profile"), storage, names)
    final = _load(phase_name(study, "final"), storage, names)
    if profile is None and final is None:
        raise AblateError(f"storage {mask_url(study.storage)} holds no results of study {study.name!r}; "
                          f"run `ablate run {study.path}` first.")
    tuning = {}
    if study.tuning.enabled:
        for group in tuning_groups(study):
            tune = _load(phase_name(study, "tune", group), storage, names)
            if tune is not None:
                tuning[group] = tune

    spec_arms = [a.id for a in study.arms]
    final_trials = final.get_trials(deepcopy=False) if final is not None else []
    owners = claimed(final, FINAL_KEYS) if final is not None else {}
    complete = canonical_order(
        [t for t in owners.values() if t.state == TrialState.COMPLETE and t.params.get("arm") in spec_arms], spec_arms)
    stored_arms = {t.params.get("arm") for t in final_trials if t.state == TrialState.COMPLETE}
    sessions = profile_trials(profile) if profile is not None else {}
    return Collected(
        study=study,
        arms=_arm_frame(study, profile_costs(profile) if profile is not None else {}),  # never a final trial's copy
        runs=_run_frame(complete),
        curves=_curve_frame(complete),
        iters=_iter_frame(complete),
        items=_item_frame(study, owners),
        tuning=tuning,
        attrs=dict(final.user_attrs) if final is not None else {},
        extra_arms=tuple(sorted(str(a) for a in stored_arms - set(spec_arms) if a is not None)),
        timing={label: dict(t.user_attrs.get(ROUNDS_ATTR) or {}) for label, t in sessions.items()},
        final=final,
    )


def _arm_frame(study: Study, costs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Factors of every spec arm, plus its cost row (arm id -> row: the profile phase's, `profile_costs`)."""
    rows = []
    for arm in study.arms:
        cost = {k: v for k, v in costs.get(arm.id, {}).items() if k not in FACTORS}
        rows.append({**arm.factors(), "is_baseline": arm.is_baseline, "profiled": arm.id in costs, **cost})
    df = pd.DataFrame(rows)
    df["reduction"] = df["reduction"].astype("Int64")
    return df


def canonical_order(trials: list[FrozenTrial], arms: list[str]) -> list[FrozenTrial]:
    """Runs in the study file's arm order, then by seed: never in trial-number order, which depends on
    which worker took which item first. Every aggregate is then summed in one order, so two identical
    runs give identical figures (a mean of 88.17, 88.26, 88.28, 88.19 is 88.225 or 88.22500000000001
    by summation order, printed 88.22 or 88.23)."""
    rank = {arm: i for i, arm in enumerate(arms)}
    return sorted(trials, key=lambda t: (rank[t.params["arm"]], int(t.params["seed"])))


def _mean(values: Any) -> float:
    vals = [float(v) for v in values or [] if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def trial_attrs(t: FrozenTrial) -> dict[str, Any]:
    """A final trial's user attributes with its series (per-epoch lists, one JSON attribute) unpacked;
    trials stored before the series attribute existed keep their lists at the top level."""
    a = dict(t.user_attrs)
    a.update(a.pop(SERIES_ATTR, None) or {})
    return a


def _run_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    rows = []
    for t in trials:  # in canonical_order
        a = trial_attrs(t)
        rows.append({
            "arm": t.params["arm"],
            "seed": int(t.params["seed"]),
            "trial": t.number,
            "acc": float(t.value) if t.value is not None else float("nan"),
            "best_acc": a.get("best_acc"),
            "best_epoch": a.get("best_epoch"),
            "epochs_run": a.get("epochs_run", len(a.get("eval_acc") or [])),
            "total_time_s": a.get("total_time_s"),
            "train_s_per_epoch": _mean(a.get("train_time_s")),
            "train_img_s": a.get("throughput"),
            "peak_mem_train_mib": a.get("peak_mem_mib"),
            "device": a.get("device"),
            "eval_split": a.get("eval_split", "test"),
            "checkpoint": a.get("checkpoint"),
            "spec_fingerprint": a.get("spec_fingerprint"),
            "hyperparameters": json.dumps(a.get("hyperparameters") or {}, sort_keys=True),
            "hp_source": a.get("hp_source"),
            "recipe": json.dumps(a.get("recipe") or {}, sort_keys=True),  # the settings this run trained with
            "train_threads": a.get("train_threads"),
            "trials_sharing_host": a.get("trials_sharing_host"),
            "test_correct": a.get("test_correct"),
            "precision": a.get("precision"),
            "warmup_s": a.get("warmup_s"),
            "nondeterministic_ops": ",".join(a.get("nondeterministic_ops") or []),
            "environment": json.dumps(a.get(ENV_ATTR) or {}, sort_keys=True),  # ablate.provenance
            "completed": t.datetime_complete,
        })
    columns = ["arm", "seed", "trial", "acc", "best_acc", "best_epoch", "epochs_run", "total_time_s",
               "train_s_per_epoch", "train_img_s", "peak_mem_train_mib", "device", "eval_split", "checkpoint",
               "spec_fingerprint", "hyperparameters", "hp_source", "recipe", "train_threads", "trials_sharing_host",
               "test_correct", "precision", "warmup_s", "nondeterministic_ops", "environment", "completed"]
    return pd.DataFrame(rows, columns=columns)


def _curve_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    rows = []
    for t in trials:
        a = trial_attrs(t)
        n = len(a.get("eval_acc") or [])
        for i in range(n):
            row: dict[str, Any] = {"arm": t.params["arm"], "seed": int(t.params["seed"]), "epoch": i + 1}
            for key in CURVE_KEYS:
                values = a.get(key) or []
                row[key] = values[i] if i < len(values) else None
            rows.append(row)
    return pd.DataFrame(rows, columns=["arm", "seed", "epoch", *CURVE_KEYS])


def _iter_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    rows = [
        {"arm": a["arm"], "seed": int(a["seed"]), "step": int(step), "loss": float(loss)}
        for a in map(trial_attrs, trials)
        for step, loss in zip(a.get("iter_step") or [], a.get("iter_loss") or [])
    ]
    return pd.DataFrame(rows, columns=["arm", "seed", "step", "loss"])


def _item_frame(study: Study, owners: dict[tuple, FrozenTrial]) -> pd.DataFrame:
    """Every arm x seed the study file asks for, and what storage says about it."""
    state_names = {TrialState.COMPLETE: "complete", TrialState.FAIL: "failed", TrialState.RUNNING: "running",
                   TrialState.WAITING: "running"}
    rows = []
    wanted = wanted_seeds(study, results_of(owners))
    for arm in study.arms:
        for seed in (s for s in study.seeds if s in wanted[arm.id]):
            t = owners.get((arm.id, seed))
            rows.append({
                "arm": arm.id,
                "seed": seed,
                "status": state_names.get(t.state, "missing") if t is not None else "missing",
                "trial": t.number if t is not None else None,
                "reason": str(t.user_attrs.get(FAIL_ATTR, "")) if t is not None and t.state == TrialState.FAIL else "",
            })
    return pd.DataFrame(rows, columns=["arm", "seed", "status", "trial", "reason"])
