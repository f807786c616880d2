"""How a study lives in Optuna storage: work-item keys, attribute names, who owns an item, and Optuna's private parts.

Each phase of a study is an Optuna study (its name: `ablate.planning.phase_name`). Profile and final
work items are trials whose params identify the item (`PROFILE_KEYS`, `FINAL_KEYS`); a tuning trial's
params are its hyperparameters. Every user and system attribute ablate stores is named here, so what
the runner, the work queue and the storage bookkeeping write is what status, the report and the
dashboard read. These names are stored: changing one orphans every existing storage.

The reading rules live here too: which trial owns an item (`claimed`), which complete trials no
longer count (`superseded`), and the read-side views of stored results (`profile_trials`,
`final_results`, ...). This module is a leaf: it imports Optuna and nothing of ablate, so it knows
no study file; what a study plans to run is `ablate.planning`.

It is also the one adapter for Optuna's private attributes (`storage_of`, `study_id_of`,
`trial_id_of`, `stale_trial_ids`) and for the system-attribute formats ablate reads or writes
(`worker_label`, `worker_of`, `worker_host_pid`, `set_worker`, `claim_system_attrs`, `attached_artifacts`): no
other module touches them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

# ---------------------------------------------------------------- phases (their study names: ablate.planning)

PHASES = ("profile", "tune", "final")

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

# a final trial's user attrs (besides the arm's factors, the training result's fields and the cost row's
# headline scalars for the dashboard); final trials of older storages also hold "cost", a copy of the arm's
# cost row, never read: cost rows are read from the profile phase only (`profile_costs`)
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


# ---------------------------------------------------------------- system attributes: their formats, read and written


def claim_system_attrs(worker: str) -> dict[str, Any]:
    """The system attributes of a trial a worker creates to claim an item (see ablate.workqueue)."""
    return {WORKER_ATTR: worker}


def set_worker(trial: Trial, worker: str) -> None:
    """Record on a live trial (one Optuna created, e.g. a tuning trial) the worker (host:pid) running it."""
    trial.storage.set_trial_system_attr(trial_id_of(trial), WORKER_ATTR, worker)


def worker_label(host: str, pid: int) -> str:
    """How a worker is recorded: 'host:pid'."""
    return f"{host}:{pid}"


def worker_of(trial: FrozenTrial) -> str | None:
    """The worker (host:pid) that claimed `trial`; None when none is recorded."""
    worker = trial.system_attrs.get(WORKER_ATTR)
    return None if worker is None else str(worker)


def worker_host_pid(trial: FrozenTrial) -> tuple[str, str]:
    """(host, pid) of the worker that claimed `trial`; empty strings when none is recorded."""
    host, _, pid = (worker_of(trial) or "").rpartition(":")
    return host, pid


def attached_artifacts(storage: BaseStorage, target: optuna.Study | Trial | FrozenTrial) -> dict[str, str]:
    """File name -> artifact id of what `target` holds now, parsed from the system attributes
    `optuna.artifacts.upload_artifact` writes (`ARTIFACTS_PREFIX` + id: JSON with `filename` and
    `artifact_id`, Optuna's private format, checked against Optuna 5.0.0). Entries deleted in the
    dashboard are gone from the attributes and skipped."""
    if isinstance(target, optuna.Study):
        attrs = storage.get_study_system_attrs(study_id_of(target))
    else:
        attrs = storage.get_trial_system_attrs(trial_id_of(target))
    names: dict[str, str] = {}
    for key, value in attrs.items():
        meta = json.loads(value) if key.startswith(ARTIFACTS_PREFIX) and isinstance(value, str) else None
        if isinstance(meta, dict) and "filename" in meta:
            names[meta["filename"]] = meta["artifact_id"]
    return names


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


# ---------------------------------------------------------------- stored results, per phase


def profile_trials(profile: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """backbone label -> its latest completed profile item: one timing session per backbone, never mixed."""
    latest: dict[str, optuna.trial.FrozenTrial] = {}
    old = superseded(profile)
    for t in sorted(profile.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        if COSTS_ATTR in t.user_attrs and t.number not in old:
            latest[str(t.params.get("backbone"))] = t
    return latest


def profile_costs(profile: optuna.Study) -> dict[str, dict[str, Any]]:
    """arm id -> its cost row, each backbone's rows from its one latest timing session: the one reader of
    cost rows (the report's cost columns, a final trial's dashboard scalars)."""
    costs: dict[str, dict[str, Any]] = {}
    for t in profile_trials(profile).values():
        costs.update(t.user_attrs[COSTS_ATTR])
    return costs


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
