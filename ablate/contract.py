"""How a study lives in Optuna storage: study names, work-item keys, attribute names, and how to read them.

Each phase of a study is an Optuna study named `<study>/profile`, `<study>/tune/<group>` or
`<study>/final` (`phase_name`). Profile and final work items are trials whose params identify the
item (`PROFILE_KEYS`, `FINAL_KEYS`); a tuning trial's params are its hyperparameters. Every user and
system attribute ablate stores is named here, so what the runner, the work queue and the storage
bookkeeping write is what status, the report and the dashboard read. These names are stored: changing
one orphans every existing storage.

The reading rules live here too: which trial owns an item (`claimed`), which complete trials no
longer count (`superseded`), and the read-side views the runner, status, plan and report share
(`profile_trials`, `final_results`, `wanted_seeds`, ...). This module imports no runner, training or
measurement code, so reading a study never loads them.

It is also the one adapter for Optuna's private attributes (`storage_of`, `study_id_of`,
`trial_id_of`, `stale_trial_ids`): no other module touches them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from . import stats

if TYPE_CHECKING:
    from .arms import Arm
    from .spec import Study

# ---------------------------------------------------------------- phases and their Optuna study names

PHASES = ("profile", "tune", "final")


def phase_name(study: Study, phase: str, group: str | None = None) -> str:
    return f"{study.name}/{phase}" + (f"/{group}" if group else "")


def group_of(study: Study, arm: Arm) -> str:
    """The tuning group an arm takes its hyperparameters from, by scope."""
    scope = study.tuning.scope
    if scope == "per_arm":
        return arm.id
    return f"{arm.backbone.label}/" + ("none" if scope == "baseline" else arm.attention)


def tuning_groups(study: Study) -> dict[str, Arm]:
    """group name -> the arm tuned for it (the baseline for scope 'baseline', else the group's first arm)."""
    groups: dict[str, Arm] = {}
    for arm in study.arms:
        tuned = study.baselines[arm.backbone.label] if study.tuning.scope == "baseline" else arm
        groups.setdefault(group_of(study, arm), tuned)
    return groups


# ---------------------------------------------------------------- work-item keys: the params that identify an item

PROFILE_KEYS = ("backbone",)  # a profile item: one backbone, all its arms timed together
FINAL_KEYS = ("arm", "seed")  # a final item: one arm x seed

# ---------------------------------------------------------------- attribute names (stored: never rename)

# the final study's user attrs: which study file it belongs to (see ablate.identity)
STUDY_FILE_ATTR = "study_file"  # the study file's resolved path
FINGERPRINT_ATTR = "fingerprint"  # the study file's current fingerprint
FINGERPRINTS_ATTR = "fingerprints"  # every fingerprint its trials ran under, oldest first
SPEC_ATTR = "spec"  # the study file as JSON, passwords masked

# a phase study's user attr
SUPERSEDED_ATTR = "ablate:superseded"  # numbers of complete trials whose item must run again

# every trial's bookkeeping
WORKER_ATTR = "ablate:worker"  # system attr: the worker (host:pid) that claimed the trial
DEVICE_ATTR = "worker_device"  # user attr: the device its worker ran on, e.g. 'cuda:0 (physical 2)'
SLURM_ATTR = "slurm_job"  # user attr: the SLURM job its worker ran in, '<array job>_<task>' or '<job>'
FAIL_ATTR = "fail_reason"  # user attr: why a FAIL failed
RETRY_ATTR = "ablate:retry"  # user attr: a FAIL that should be re-run (killed worker, interrupt)
DUPLICATE_ATTR = "ablate:duplicate_of"  # user attr: a FAIL that lost a claim race to this trial number

# a profile trial's user attrs
COSTS_ATTR = "costs"  # arm id -> its cost row
ROUNDS_ATTR = "rounds"  # the timing session's per-round record
HOST_ATTR = "host"  # the host it was timed (profile) or trained (final) on

# a tuning trial's user attr
TUNE_ARM_ATTR = "arm"  # the arm it trained

# a final trial's user attrs (besides the arm's factors and the training result's fields)
COST_ATTR = "cost"  # a copy of the arm's cost row
HYPERPARAMETERS_ATTR = "hyperparameters"  # the tuned values it trained with
HP_PREFIX = "hp."  # each tuned value again as `hp.<name>`, a sortable dashboard column
ENV_ATTR = "environment"  # CPU/GPU model, threads, Python and package versions (ablate.provenance)
SERIES_ATTR = "series"  # per-epoch and per-step lists, one JSON attribute out of the trial table's way

ARTIFACTS_PREFIX = "artifacts:"  # optuna.artifacts' system-attribute prefix (optuna._upload.ARTIFACTS_ATTR_PREFIX)

# the objective each phase study names (optuna-dashboard shows it instead of 'Objective 0')
PROFILE_OBJECTIVE = "arms timed"  # a profile item's value: how many arms of its backbone it timed together
TUNE_OBJECTIVE = "best validation accuracy (%)"
FINAL_OBJECTIVE = "test accuracy (%)"  # the last epoch's, never a best-of-epochs

# ---------------------------------------------------------------- Optuna's private attributes: the one adapter
#
# Optuna has no public way to reach a study's storage and ids, or a trial's id, and ablate needs them:
# the work queue creates RUNNING trials itself (`enqueue_trial` + `ask()` is not atomic), storage
# bookkeeping fails dead workers' trials, artifacts are looked up by id. Checked against Optuna 5.0.0
# (`Study._storage`, `Study._study_id`, `Trial._trial_id` / `FrozenTrial._trial_id`, and
# `_get_stale_trial_ids` of RDBStorage and of the cache wrapper around it); an Optuna upgrade must be
# checked here, and only here.


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage an Optuna study reads and writes (for RDB, Optuna's private cache wrapper around it)."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The study's id in its storage."""
    return study._study_id


def trial_id_of(trial: Trial | FrozenTrial) -> int:
    """The trial's id in its storage: unique across the storage's studies, and in creation order."""
    return trial._trial_id


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """RUNNING trials whose heartbeat is older than the grace period (an RDB storage with heartbeats
    only). A SELECT that compares heartbeats with now(): it changes nothing."""
    return storage_of(study)._get_stale_trial_ids(study_id_of(study))


# ---------------------------------------------------------------- which trial counts for an item


def item_key(params: Mapping[str, Any], keys: Sequence[str]) -> tuple:
    return tuple(params.get(k) for k in keys)


def is_ignored(t: FrozenTrial, retry_failed: bool = False) -> bool:
    """A trial that does not count for its item: duplicates, dead workers' trials, retried failures."""
    if t.state == TrialState.FAIL:
        return (
            DUPLICATE_ATTR in t.user_attrs
            or bool(t.user_attrs.get(RETRY_ATTR))
            or FAIL_ATTR not in t.user_attrs  # failed by the heartbeat reaper
            or retry_failed
        )
    return t.state == TrialState.PRUNED


def superseded(study: optuna.Study) -> set[int]:
    """Numbers of complete trials that no longer count (their item changed and runs again)."""
    return set(study.user_attrs.get(SUPERSEDED_ATTR, []))


def claimed(study: optuna.Study, keys: Sequence[str], retry_failed: bool = False) -> dict[tuple, FrozenTrial]:
    """item key -> the trial that owns it: the first created one that counts, except that a failed owner gives
    way to a later trial of its item (one exists only because the failure was retried, e.g. --retry-failed)."""
    owners: dict[tuple, FrozenTrial] = {}
    old = superseded(study)
    for t in sorted(study.get_trials(deepcopy=False), key=trial_id_of):
        if t.number not in old and not is_ignored(t, retry_failed):
            key = item_key(t.params, keys)
            if key not in owners or owners[key].state == TrialState.FAIL:
                owners[key] = t
    return owners


# ---------------------------------------------------------------- the items each phase wants, and its results


def profile_items(study: Study) -> list[dict[str, Any]]:
    """One item per backbone: its arms are timed together (interleaved rounds need all of them at once)."""
    items = []
    for label in dict.fromkeys(a.backbone.label for a in study.arms):
        items.append({"backbone": label})
    return items


def profile_trials(profile: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """backbone label -> its latest completed profile item: one timing session per backbone, never mixed."""
    latest: dict[str, optuna.trial.FrozenTrial] = {}
    old = superseded(profile)
    for t in sorted(profile.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        if COSTS_ATTR in t.user_attrs and t.number not in old:
            latest[str(t.params.get("backbone"))] = t
    return latest


def profile_costs(profile: optuna.Study) -> dict[str, dict[str, Any]]:
    """arm id -> its cost row, each backbone's rows from its one latest timing session."""
    costs: dict[str, dict[str, Any]] = {}
    for t in profile_trials(profile).values():
        costs.update(t.user_attrs[COSTS_ATTR])
    return costs


def final_items(study: Study, results: dict[str, dict[int, float]] | None = None) -> list[dict[str, Any]]:
    """Every arm x seed the final phase wants now, baselines first within each seed.

    With a fixed seed list that is every arm x seed. With a SeedPlan it depends on the results so far
    (`results`: arm -> seed -> test accuracy, see `final_results`): see `wanted_seeds`.
    """
    wanted = wanted_seeds(study, results or {})
    return [{"arm": a.id, "seed": s} for a in study.arms for s in study.seeds if s in wanted[a.id]]


def wanted_seeds(study: Study, results: dict[str, dict[int, float]]) -> dict[str, set[int]]:
    """arm id -> the seeds it needs, given the results so far.

    A SeedPlan gives every arm its first `min` seeds. An attention arm gets its next seed (and its
    baseline the same seed, so the comparison stays paired) only when all its current seeds and its
    baseline's are complete and the CI half-width of the per-seed paired differences still exceeds
    `target_ci_pp`, up to `max`. The rule looks at precision only, never at a p-value, so adding
    seeds cannot steer a test towards significance. It is a pure function of storage: every worker
    computes the same items, and each is still claimed exactly once.
    """
    from .data import dataset_info  # the dataset layer (torch) only where a seed plan asks for the test size

    plan = study.seed_plan
    if plan is None:
        return {a.id: set(study.seeds) for a in study.arms}
    counts = {a.id: plan.min for a in study.arms}
    floor = stats.binomial_sd_pp(50.0, dataset_info(study.dataset).test_count)  # only where the spread is 0
    for arm in study.arms:
        base = study.baselines.get(arm.backbone.label)
        if arm.is_baseline or base is None:
            continue
        mine, theirs = results.get(arm.id, {}), results.get(base.id, {})
        n = plan.min
        while n < plan.max:
            seeds = study.seeds[:n]
            if not all(s in mine and s in theirs for s in seeds):
                break  # wait for the results before deciding
            diffs = [mine[s] - theirs[s] for s in seeds]
            spread = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
            if not stats.needs_more_seeds(diffs, plan.target_ci_pp, plan.max, floor_sd=floor if spread == 0 else None):
                break
            n += 1
        counts[arm.id] = n
        counts[base.id] = max(counts[base.id], n)
    return {arm_id: set(study.seeds[:n]) for arm_id, n in counts.items()}


def final_results(ostudy: optuna.Study | None) -> dict[str, dict[int, float]]:
    """arm -> seed -> test accuracy of the complete final trials that own their item."""
    return results_of(claimed(ostudy, list(FINAL_KEYS))) if ostudy is not None else {}


def results_of(owners: dict[tuple, optuna.trial.FrozenTrial]) -> dict[str, dict[int, float]]:
    """arm -> seed -> test accuracy, from the owning trial of each (arm, seed) item."""
    out: dict[str, dict[int, float]] = {}
    for t in owners.values():
        if t.state == TrialState.COMPLETE and t.value is not None:
            out.setdefault(str(t.params["arm"]), {})[int(t.params["seed"])] = float(t.value)
    return out
