"""Where a study stands, read from storage alone: per-phase counts, running trials, and what a run left behind.

Everything here only reads (a RUNNING trial whose worker is gone is shown as dead, not failed), so
`ablate status`, a worker's progress line and the summary `ablate run` ends with can run beside live
workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from .contract import DEVICE_ATTR, DUPLICATE_ATTR, SLURM_ATTR, claimed, final_results, item_key, trial_id_of, worker_of
from .planning import final_items, phase_name, profile_items, tuning_groups
from .spec import Study
from .storage import dead_trial_ids, open_storage
from .workqueue import counts


@dataclass(frozen=True)
class PhaseOutcome:
    """One phase after a run, in work items (tuning: trials; it replaces its failed trials, so none counts as
    failed). `failed_now`: items not complete whose trial failed during this run (earlier failures that
    this run completed do not count)."""

    phase: str
    total: int
    complete: int
    failed: int = 0
    failed_now: int = 0

    @property
    def missing(self) -> int:
        return self.total - self.complete - self.failed


@dataclass(frozen=True)
class RunOutcome:
    """Every phase after a run: the closing summary, and `ablate run`'s exit code (1 unless `ok`)."""

    study: Study
    phases: tuple[PhaseOutcome, ...]
    failed_workers: int = 0  # local worker processes that exited 1

    @property
    def ok(self) -> bool:
        return self.failed_workers == 0 and not any(p.failed_now for p in self.phases)


def phase_studies(study: Study, storage: optuna.storages.BaseStorage) -> dict[str, optuna.Study | None]:
    """Phase study name -> its Optuna study, None where it does not exist yet. Loads, never creates."""
    names = set(optuna.get_all_study_names(storage=storage))
    wanted = [phase_name(study, "profile")]
    if study.tuning.enabled:
        wanted += [phase_name(study, "tune", g) for g in tuning_groups(study)]
    wanted.append(phase_name(study, "final"))
    return {name: optuna.load_study(study_name=name, storage=storage) if name in names else None for name in wanted}


def trial_counts(study: Study, storage: optuna.storages.BaseStorage) -> dict[str, int]:
    """Trials per phase study now: trials numbered from there on were created during the run that follows."""
    return {name: len(s.get_trials(deepcopy=False)) if s else 0 for name, s in phase_studies(study, storage).items()}


def items_outcome(phase: str, ostudy: optuna.Study | None, items: list[dict[str, Any]], first: int) -> PhaseOutcome:
    """Complete / failed / failed-in-this-run items of a work-item phase (profile, final)."""
    if ostudy is None or not items:
        return PhaseOutcome(phase, len(items), 0)
    keys = list(items[0])
    owners = claimed(ostudy, keys)
    failed_since = {item_key(t.params, keys) for t in ostudy.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                    if t.number >= first and DUPLICATE_ATTR not in t.user_attrs}
    states = {k: owners[k].state for k in (item_key(i, keys) for i in items) if k in owners}
    complete = {k for k, state in states.items() if state == TrialState.COMPLETE}
    return PhaseOutcome(phase, len(items), len(complete), sum(state == TrialState.FAIL for state in states.values()),
                        len(failed_since - complete))


def run_outcome(study: Study, storage: optuna.storages.BaseStorage, first: dict[str, int],
                failed_workers: int = 0) -> RunOutcome:
    """What storage holds for every phase after a run that started when the phases had `first` trials."""
    loaded = phase_studies(study, storage)
    final = loaded[phase_name(study, "final")]
    phases = [items_outcome("profile", loaded[phase_name(study, "profile")], profile_items(study),
                            first.get(phase_name(study, "profile"), 0))]
    if study.tuning.enabled:
        n = study.tuning.n_trials
        done = [len(s.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))) if s else 0
                for name, s in loaded.items() if name.startswith(phase_name(study, "tune") + "/")]
        phases.append(PhaseOutcome("tune", n * len(done), sum(min(n, d) for d in done)))
    phases.append(items_outcome("final", final, final_items(study, final_results(final)),
                                first.get(phase_name(study, "final"), 0)))
    return RunOutcome(study, tuple(phases), failed_workers)


def summary_text(outcome: RunOutcome) -> str:
    """The paragraph `ablate run` ends with: where each phase stands and the command to type next."""
    study = outcome.study
    parts = []
    for p in outcome.phases:
        unit = "trials" if p.phase == "tune" else "items"
        text = f"{p.phase} {p.complete}/{p.total} {unit} complete"
        if p.failed:
            text += f", {p.failed} failed"
        if p.missing:
            text += f", {p.missing} missing"
        parts.append(text)
    lines = [f"ablate run {study.name}: " + "; ".join(parts) + "."]
    failed_now = sum(p.failed_now for p in outcome.phases)
    if failed_now:
        lines.append(f"{failed_now} item(s) failed in this run (their reasons: the report, or the dashboard).")
    if outcome.failed_workers:
        lines.append(f"{outcome.failed_workers} worker process(es) exited with an error (see above).")
    same = " (with the same --storage or $ABLATE_STORAGE)" if storage_overridden(study) else ""
    missing = sum(p.missing for p in outcome.phases)
    failed = sum(p.failed for p in outcome.phases)
    if missing:
        lines.append(f"next: ablate run {study.path}{same} to run the {missing} missing item(s) (it resumes)"
                     + (", with --retry-failed to try the failed ones again too." if failed else "."))
    elif failed:
        lines.append(f"next: ablate report {study.path}{same} (failed items are listed there), or ablate run "
                     f"{study.path} --retry-failed to try them again.")
    else:
        lines.append(f"next: ablate report {study.path}{same}")
    return " ".join(lines)


def storage_overridden(study: Study) -> bool:
    """Does the study use a storage other than its file's (so commands must name it again)?"""
    return study.storage not in (f"sqlite:///{study.run_dir / 'optuna.db'}", study.document.get("storage"))


def status_frame(study: Study, storage: optuna.storages.BaseStorage | None = None) -> pd.DataFrame:
    """Per phase: trials complete / running / dead / failed / pruned / waiting, and work items left.

    Read-only: a RUNNING trial whose worker is gone (local pid, or a heartbeat older than the grace
    period) is counted as dead, not failed; the next `ablate run` fails and re-runs it.
    """
    storage = storage or open_storage(study.storage, read_only=True)
    loaded = phase_studies(study, storage)
    items = {"profile": profile_items(study),
             "final": final_items(study, final_results(loaded[phase_name(study, "final")]))}
    rows = []
    for name, ostudy in loaded.items():
        row: dict[str, Any] = {"phase": name}
        trials = ostudy.get_trials(deepcopy=False) if ostudy is not None else []
        dead = dead_trial_ids(ostudy) if ostudy is not None else set()
        for state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL, TrialState.PRUNED, TrialState.WAITING):
            row[state.name.lower()] = sum(t.state == state for t in trials)
            if state == TrialState.RUNNING:
                row["running"] -= len(dead)
                row["dead"] = len(dead)
        phase_items = items.get(name.split("/")[1])
        if phase_items is not None:
            row["items"] = len(phase_items)
            row["items_left"] = items_left(ostudy, phase_items, dead) if ostudy else len(phase_items)
        else:
            row["items"] = study.tuning.n_trials
            row["items_left"] = max(0, study.tuning.n_trials - row["complete"] - row["pruned"])
        rows.append(row)
    return pd.DataFrame(rows)


def items_left(ostudy: optuna.Study, items: list[dict[str, Any]], dead: set[int]) -> int:
    """Items no trial holds, and items whose trial's worker is dead: the next run fails that trial and re-runs
    its item, so it is still left to do (failed items are not: only --retry-failed re-runs them)."""
    keys = list(items[0])
    owners = claimed(ostudy, keys)
    return sum(key not in owners or trial_id_of(owners[key]) in dead for key in (item_key(i, keys) for i in items))


def running_frame(study: Study, storage: optuna.storages.BaseStorage | None = None) -> pd.DataFrame:
    """Every RUNNING trial: its item, worker (host:pid), SLURM job ('-' outside SLURM), device, and whether that
    worker is alive. Read-only."""
    storage = storage or open_storage(study.storage, read_only=True)
    rows = []
    for name, ostudy in phase_studies(study, storage).items():
        if ostudy is None:
            continue
        dead = dead_trial_ids(ostudy)
        for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            rows.append({"phase": name, "trial": t.number,
                         "item": " ".join(f"{k}={v}" for k, v in t.params.items()),
                         "worker": worker_of(t) or "?",
                         "slurm job": t.user_attrs.get(SLURM_ATTR, "-"), "device": t.user_attrs.get(DEVICE_ATTR, "?"),
                         "state": "dead" if trial_id_of(t) in dead else "running",
                         "started": t.datetime_start.strftime("%Y-%m-%d %H:%M:%S") if t.datetime_start else "?"})
    return pd.DataFrame(rows, columns=["phase", "trial", "item", "worker", "slurm job", "device", "state", "started"])


def progress_line(phase: str, ostudy: optuna.Study, items: list[dict]) -> str:
    """'[final 3/14 done, 2 running, ETA 4.2 min]': the live view of a phase, from storage."""
    c = counts(ostudy, items, list(items[0]))
    finished = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished
               if t.datetime_complete and t.datetime_start]
    left = c.total - c.complete - c.failed
    eta = f"ETA {sum(seconds) / len(seconds) * left / max(1, c.running) / 60:.1f} min" if seconds else "ETA ?"
    return f"[{phase} {c.complete + c.failed}/{c.total} done, {c.running} running, {eta}]"
