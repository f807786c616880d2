"""Run a fixed list of work items (arm x seed) through one Optuna study, each exactly once.

Optuna has no work queue, so ablate builds one from its primitives. A worker claims the next item
no trial owns yet by creating a RUNNING trial with the item's params (trial creation is atomic in
every storage; `enqueue_trial` + `ask()` is not: two SQLite processes were seen popping the same
waiting trial). Two workers that claim the same item at the same moment both create a trial; the
one with the higher trial id sees the lower one and bows out as a FAIL marked
`ablate:duplicate_of`, so each item *trains* once. Trials of dead workers are failed and their
items re-run; trials that failed for a reason of their own (non-finite loss, out of memory) are
recorded and not retried unless asked. A worker with nothing left to claim waits while other
workers still hold items, as long as it can tell when they die (a local pid, or heartbeats): a
dead worker's item is then re-run by whoever is still there, on any host. Which trial owns an item
is `ablate.contract.claimed`, the rule status and the report read by too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, Trial, TrialState, create_trial

from .config import is_integer
from .contract import (
    DUPLICATE_ATTR,
    FAIL_ATTR,
    RETRY_ATTR,
    SUPERSEDED_ATTR,
    claim_system_attrs,
    claimed,
    item_key,
    storage_of,
    study_id_of,
    superseded,
    trial_id_of,
)
from .storage import death_detectable, heartbeat, mask_url, reap_dead_trials, worker_id

Item = Mapping[str, Any]


class ItemFailed(Exception):
    """Raised by a work function for a failure of the item: recorded with its reason, the study moves on.

    `retry=False` (non-finite loss, out of memory): the result of this arm, not retried unless asked.
    `retry=True` (e.g. the dataset vanished): the next `ablate run` tries the item again.
    """

    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry


@dataclass(frozen=True)
class Counts:
    total: int
    complete: int
    running: int
    failed: int
    todo: int


def supersede(study: optuna.Study, trial: FrozenTrial) -> None:
    """Let a complete trial's item be claimed again (finished trials cannot be edited: a study attr)."""
    study.set_user_attr(SUPERSEDED_ATTR, sorted(superseded(study) | {trial.number}))


def counts(study: optuna.Study, items: Sequence[Item], keys: Sequence[str]) -> Counts:
    owners = claimed(study, keys)
    states = [owners[k].state for k in (item_key(i, keys) for i in items) if k in owners]
    return Counts(
        total=len(items),
        complete=sum(s == TrialState.COMPLETE for s in states),
        running=sum(s == TrialState.RUNNING for s in states),
        failed=sum(s == TrialState.FAIL for s in states),
        todo=len(items) - len(states),
    )


def item_distribution(values: Sequence[Any]) -> BaseDistribution:
    """How an item key is stored as a trial param. Integer keys (seeds) get an integer range, which
    Optuna lets grow: a study can add seeds later (adaptive seeds) without a 'dynamic value space'
    error. Other keys are categorical over the study's values."""
    if all(is_integer(v) for v in values):
        return IntDistribution(0, 2**63 - 1)
    return CategoricalDistribution(list(dict.fromkeys(values)))


def run_items(
    study: optuna.Study,
    items: Sequence[Item],
    work: Callable[[Trial, Item], tuple[float, dict[str, Any]]],
    *,
    retry_failed: bool = False,
    on_item_done: Callable[[Item, str], None] | None = None,
    claim_attrs: Mapping[str, Any] | None = None,
    poll_s: float = 2.0,
) -> int:
    """Claim and run items until none is left unclaimed. Returns how many this worker completed.

    `work(trial, item)` returns (objective value, user attrs); it raises ItemFailed for a failure
    of the item itself. KeyboardInterrupt marks the trial retryable and propagates. `claim_attrs`
    are user attrs set when an item is claimed (e.g. the worker's device, shown while it runs).
    While other workers hold items whose death this worker could detect, it polls every `poll_s`
    seconds, so an item of a worker that dies is still run.
    """
    keys = list(items[0]) if items else []
    distributions = {k: item_distribution([i[k] for i in items]) for k in keys}
    wanted = {item_key(i, keys): i for i in items}
    me, done = worker_id(), 0
    rng = random.Random(me)
    failed_here: set[tuple] = set()  # retryable failures wait for the next run, not this loop
    while True:
        reap_dead_trials(study)
        owners = claimed(study, keys, retry_failed)
        todo = [k for k in wanted if k not in owners and k not in failed_here]
        if not todo:
            if not others_watchable(study, [owners[k] for k in wanted if k in owners]):
                return done
            time.sleep(poll_s)
            continue
        # alone: in order (baselines first); beside other workers: spread out to avoid racing for one item
        busy = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        key = todo[rng.randrange(len(todo))] if busy else todo[0]
        claim = create_trial(state=TrialState.RUNNING, params=dict(wanted[key]), distributions=distributions,
                             system_attrs=claim_system_attrs(me), user_attrs=dict(claim_attrs or {}))
        trial = Trial(study, storage_of(study).create_new_trial(study_id_of(study), template_trial=claim))
        owner = claimed(study, keys, retry_failed).get(key)
        if owner is not None and trial_id_of(owner) != trial_id_of(trial):
            trial.set_user_attr(DUPLICATE_ATTR, owner.number)
            trial.set_user_attr(FAIL_ATTR, "duplicate claim: another worker owns this item")
            study.tell(trial, state=TrialState.FAIL)
            continue
        item = wanted[key]
        try:
            with heartbeat(storage_of(study), trial_id_of(trial)):
                value, attrs = work(trial, item)
        except ItemFailed as err:
            trial.set_user_attr(FAIL_ATTR, mask_url(str(err)))
            if err.retry:
                trial.set_user_attr(RETRY_ATTR, True)
                failed_here.add(key)
            study.tell(trial, state=TrialState.FAIL)
            if on_item_done:
                on_item_done(item, "failed")
            continue
        except BaseException as err:  # interrupt or a bug: leave the item to be re-run
            reason = f"interrupted: {type(err).__name__}: {err}"  # a database error may name its URL
            trial.set_user_attr(FAIL_ATTR, mask_url(reason)[:500])
            trial.set_user_attr(RETRY_ATTR, True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, value)
        done += 1
        if on_item_done:
            on_item_done(item, "complete")


def others_watchable(study: optuna.Study, owners: Sequence[FrozenTrial]) -> bool:
    """Are some of these owning trials still RUNNING in workers whose death this process would notice?"""
    return any(t.state == TrialState.RUNNING and death_detectable(storage_of(study), t) for t in owners)


def wait_until_idle(studies: Sequence[optuna.Study], poll_s: float = 3.0, timeout_s: float | None = None) -> None:
    """Block until no study has RUNNING trials (other workers finishing a phase)."""
    start = time.monotonic()
    while True:
        busy = False
        for s in studies:
            reap_dead_trials(s)
            busy |= bool(s.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if not busy or (timeout_s is not None and time.monotonic() - start > timeout_s):
            return
        time.sleep(poll_s)
