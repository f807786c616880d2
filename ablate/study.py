"""Run a study: profile every arm once, tune hyperparameters, train every arm x seed, resumably.

Each phase is an Optuna study in the study's storage, named `<study>/profile`, `<study>/tune/<group>`
and `<study>/final`. Storage is the ledger: re-running the same command continues where it stopped,
and the report is regenerated from storage alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.trial import Trial, TrialState

from . import stats
from .arms import Arm
from .data import dataset_info, require_present
from .errors import AblateError
from .startup import timed_load
from .artifacts import artifact_dir, attach, curve_figure, open_store
from .costs import Columns, TrainStep, profile_backbone
from .timing import Setting, available_cores
from .spec import Param, Study
from .storage import (SERIES_ATTR, STORAGE_ENV, WORKER_ATTR, dead_trial_ids, mask_url, open_storage, reap_dead_trials,
                      worker_host, worker_id)
from .device import device_name, resolve_device
from .train import NonFiniteLossError, make_optimizer, model_factory, train
from .workqueue import (DUPLICATE_ATTR, ItemFailed, claimed, counts, item_key, run_items, supersede, superseded,
                        wait_until_idle)

PHASES = ("profile", "tune", "final")
DEVICE_ATTR = "worker_device"  # trial user attr: the device its worker ran on, e.g. 'cuda:0 (physical 2)'


def phase_name(study: Study, phase: str, group: str | None = None) -> str:
    return f"{study.name}/{phase}" + (f"/{group}" if group else "")


# ---------------------------------------------------------------- guards


def guard_identity(study: Study, storage: optuna.storages.BaseStorage, allow_changed_spec: bool) -> optuna.Study:
    """Refuse to mix results: another file with this name, or this file changed since trials ran."""
    final = optuna.create_study(
        study_name=phase_name(study, "final"), storage=storage, direction="maximize", load_if_exists=True
    )
    attrs = final.user_attrs
    path = str(study.path.resolve())
    if "fingerprint" not in attrs:
        final.set_user_attr("study_file", path)
        final.set_user_attr("fingerprint", study.fingerprint)
        final.set_user_attr("fingerprints", [study.fingerprint])
        final.set_user_attr("spec", stored_document(study))
        return final
    if attrs["fingerprint"] == study.fingerprint:
        if attrs.get("spec") != stored_document(study):  # e.g. a password stored by an older version: masked now
            final.set_user_attr("spec", stored_document(study))
        return final
    if attrs.get("study_file") != path and not allow_changed_spec:
        raise AblateError(
            f"{study.path}: storage {mask_url(study.storage)} already holds a study named {study.name!r} made from "
            f"another file ({attrs.get('study_file')}) with different contents; rename this study (key 'name') or "
            "use another storage, so results are not mixed."
        )
    if not allow_changed_spec:
        raise AblateError(
            f"{study.path}: the study file changed since its trials ran (fingerprint {attrs['fingerprint']} -> "
            f"{study.fingerprint}); re-run with --allow-changed-spec to continue (the report will say which trials "
            "came from which version), or give the changed study a new name."
        )
    history = list(attrs.get("fingerprints", [attrs["fingerprint"]]))
    final.set_user_attr("fingerprints", history + [study.fingerprint])
    final.set_user_attr("fingerprint", study.fingerprint)
    final.set_user_attr("spec", stored_document(study))
    return final


def stored_document(study: Study) -> dict[str, Any]:
    """The study file as the final study keeps it: JSON, every URL's password masked (storage is readable
    by everyone who can open the dashboard; the password must not be)."""
    return json.loads(mask_url(json.dumps(study.document, default=str)))


# ---------------------------------------------------------------- tuning


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


def suggest(trial: Trial, space: tuple[Param, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in space:
        if p.choices is not None:
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.integer:
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            params[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)
    return params


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def tuned_params(study: Study, storage: optuna.storages.BaseStorage, arm: Arm) -> dict[str, Any]:
    """Best completed tuning trial's params for `arm`'s group ({} when tuning is off)."""
    if not study.tuning.enabled:
        return {}
    tune = optuna.load_study(study_name=phase_name(study, "tune", group_of(study, arm)), storage=storage)
    complete = [t for t in tune.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        raise AblateError(f"tuning of {group_of(study, arm)!r} has no completed trial; see `ablate status`.")
    return dict(max(complete, key=lambda t: t.value).params)


# ---------------------------------------------------------------- the runner


@dataclass
class Runner:
    """One worker's view of a study: its storage, its data, and the three phases."""

    study: Study
    storage: optuna.storages.BaseStorage
    retry_failed: bool = False
    progress: bool = True
    data_dir: str | None = None
    _data: Any = None

    @property
    def device(self) -> torch.device:
        return resolve_device(self.study.runtime.device)

    @property
    def worker_device(self) -> str:
        return describe_device(self.device)

    def data(self) -> Any:
        if self._data is None:
            # moved after a fit check (Data.to): a dataset that does not fit fails as DataDoesNotFit
            # (an AblateError: retried by the next run), never as an arm's own "out of memory"
            self._data, startup = timed_load(self.study.dataset, self.data_dir, self.device)
            print(f"[worker {worker_id()}] {startup.line()}", file=sys.stderr, flush=True)  # even --quiet
        return self._data

    # -- phase 1: cost, once per backbone: all its arms timed together in interleaved rounds
    def timing_setting(self) -> Setting:
        """The profile phase's timing conditions: the study's measure section, defaulting to the
        precision and memory layout the arms are trained in (bf16 + channels_last on CUDA)."""
        m = self.study.measure
        device = self.device if m.device == "auto" else resolve_device(m.device)
        trained = self.study.runtime.precision(device)
        return Setting(device=str(device), precision=trained if m.precision == "as_trained" else m.precision,
                       channels_last=self.study.runtime.channels_last if m.channels_last is None else m.channels_last,
                       threads=m.threads, rounds=m.rounds, block_time=m.block_time, cuda_graph=m.cuda_graph,
                       seed=self.study.seeds[0])

    def profile(self) -> None:
        ostudy = optuna.create_study(study_name=phase_name(self.study, "profile"), storage=self.storage, load_if_exists=True)
        name_objective(ostudy, PROFILE_OBJECTIVE)
        items = profile_items(self.study)
        m, recipe = self.study.measure, self.study.recipe
        info = dataset_info(self.study.dataset)  # metadata only: the dataset is not loaded to read a shape
        shape = (info.in_channels, info.input_size, info.input_size)

        def work(trial: Trial, item: dict) -> tuple[float, dict[str, Any]]:
            arms = [a for a in self.study.arms if a.backbone.label == item["backbone"]]
            setting = self.timing_setting()
            device = torch.device(setting.device)
            step = (TrainStep(recipe.batch_size, lambda model: make_optimizer(model, recipe, device))
                    if m.train_step else None)
            rows, record = profile_backbone(arms, shape, num_classes=info.num_classes, setting=setting,
                                            batch_sizes=m.batch_sizes, train_step=step, host=worker_host())
            record["device_name"] = device_name(device)
            for row in rows:
                row["device_name"] = record["device_name"]
            for text in (w for row in rows for w in row["timing_warnings"]):
                self._say(f"warning: {text}")
            return float(len(rows)), {"costs": _jsonable({r["arm"]: r for r in rows}), "rounds": _jsonable(record),
                                      "host": record["host"]}

        for label, t in profile_trials(ostudy).items():  # a backbone that gained arms is re-timed as a whole,
            wanted = {a.id for a in self.study.arms if a.backbone.label == label}  # never mixed with old rows
            if not wanted <= set(t.user_attrs["costs"]):
                supersede(ostudy, t)
        run_items(ostudy, items, work, retry_failed=self.retry_failed, on_item_done=self._echo("profile"),
                  claim_attrs={DEVICE_ATTR: describe_device(torch.device(self.timing_setting().device))})

    # -- phase 2: hyperparameters on the validation split
    def tune(self) -> None:
        if not self.study.tuning.enabled:
            return
        t = self.study.tuning
        studies = []
        for group, arm in tuning_groups(self.study).items():
            ostudy = optuna.create_study(
                study_name=phase_name(self.study, "tune", group),
                storage=self.storage,
                direction="maximize",
                sampler=optuna.samplers.TPESampler(seed=t.sampler_seed),
                pruner=make_pruner(t.pruner),
                load_if_exists=True,
            )
            name_objective(ostudy, TUNE_OBJECTIVE)
            studies.append(ostudy)
            reap_dead_trials(ostudy)
            done = len(ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            if done >= t.n_trials:
                continue
            self._say(f"tune {group}: {done}/{t.n_trials} trials done")
            ostudy.optimize(
                self._tune_objective(arm),
                callbacks=[optuna.study.MaxTrialsCallback(t.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                           self._tune_echo(group)],
                catch=(NonFiniteLossError, torch.OutOfMemoryError),
            )
        wait_until_idle(studies)

    def _tune_objective(self, arm: Arm) -> Callable[[Trial], float]:
        def objective(trial: Trial) -> float:
            trial.storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, worker_id())
            trial.set_user_attr(DEVICE_ATTR, self.worker_device)
            params = suggest(trial, self.study.tuning.space)
            recipe = dataclasses.replace(self.study.recipe, epochs=self.study.tuning.epochs, **params)

            def report(epoch: int, metrics: dict[str, Any]) -> bool:
                trial.report(metrics["val_acc"], epoch)  # prune on validation only
                if trial.should_prune():
                    raise optuna.TrialPruned()
                return False

            result = train(model_factory(**arm.build_kwargs()), self.data(), recipe, runtime=self.study.runtime,
                           seed=self.study.seeds[0], eval_split="val", on_epoch_end=report, progress=False)
            trial.set_user_attr("arm", arm.id)
            return float(result.best_acc)

        return objective

    # -- phase 3: every arm x seed, validation deciding, the test split recorded and reported
    def final(self) -> None:
        ostudy = optuna.create_study(study_name=phase_name(self.study, "final"), storage=self.storage,
                                     direction="maximize", load_if_exists=True)
        name_objective(ostudy, FINAL_OBJECTIVE)
        profile = optuna.load_study(study_name=phase_name(self.study, "profile"), storage=self.storage)
        costs = profile_costs(profile)
        arms = {a.id: a for a in self.study.arms}
        ckpt_dir = self.study.run_dir / "checkpoints"
        items = final_items(self.study, final_results(ostudy))

        def work(trial: Trial, item: dict) -> tuple[float, dict[str, Any]]:
            self._announce("final", ostudy, items, item)
            arm = arms[item["arm"]]
            params = tuned_params(self.study, self.storage, arm)
            recipe = dataclasses.replace(self.study.recipe, **params)
            ckpt = checkpoint_path(ckpt_dir, self.study, arm, item["seed"], params)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            sharing = host_running(ostudy)
            curve = LearningCurve(trial)
            try:  # the validation split (dataset val_fraction) steers; test is evaluated per epoch, recorded only
                data = self.data()
                result = train(model_factory(**arm.build_kwargs()), data, recipe, runtime=self.study.runtime,
                               seed=item["seed"], eval_split="test", checkpoint_path=ckpt, progress=self.progress,
                               on_epoch_end=curve.report if data.val is not None else None)
            except NonFiniteLossError as err:
                raise ItemFailed(f"non-finite loss: {err}") from None
            except torch.OutOfMemoryError as err:
                raise ItemFailed(f"out of memory: {str(err).splitlines()[0]}") from None
            except AblateError as err:  # e.g. the dataset vanished: recorded, retried by the next run
                raise ItemFailed(str(err), retry=True) from None
            curve.complete(result.val_acc)
            measured = _jsonable(result.as_dict())
            series = {k: measured.pop(k) for k in list(measured) if isinstance(measured[k], list) or k == "test_correct"}
            cost = costs.get(arm.id, {})
            attrs = {**arm.factors(), "seed": item["seed"], "spec_fingerprint": self.study.fingerprint,
                     "hyperparameters": _jsonable(params), "hp_source": hyperparameter_source(self.study, self.storage, arm),
                     **{f"hp.{k}": v for k, v in _jsonable(params).items()},
                     "recipe": _jsonable(dataclasses.asdict(recipe)), "checkpoint": str(ckpt),
                     "cost": cost, **scalar_costs(cost, min(self.study.measure.batch_sizes)), "train_threads": self.study.runtime.threads or available_cores(),
                     "host": worker_host(), "trials_sharing_host": max(sharing, host_running(ostudy)),
                     **measured, SERIES_ATTR: series}
            self._attach_curves(trial, arm, item["seed"], series)
            return float(result.final_acc), attrs  # the last epoch's test accuracy, never a best-of-epochs

        while True:  # with a SeedPlan, seeds are added as results show which arms still lack precision
            run_items(ostudy, items, work, retry_failed=self.retry_failed, on_item_done=self._echo("final"),
                      claim_attrs={DEVICE_ATTR: self.worker_device})
            if self.study.seed_plan is None:
                return
            wait_until_idle([ostudy])  # other workers' results decide what comes next, too
            more = final_items(self.study, final_results(ostudy))
            if more == items:
                return
            added = [i for i in more if i not in items]
            self._say(f"[final] precision target not met yet: adding {len(added)} item(s): "
                      + ", ".join(f"{i['arm']} seed {i['seed']}" for i in added[:6]) + (" ..." if len(added) > 6 else ""))
            items = more

    def _attach_curves(self, trial: Trial, arm: Arm, seed: int, series: dict[str, Any]) -> None:
        """The trial's learning curves as a PNG artifact (browsable in optuna-dashboard)."""
        folder = artifact_dir(self.study.storage, self.study.run_dir, self.study.artifacts)
        with tempfile.TemporaryDirectory() as tmp:
            png = curve_figure(series, f"{arm.id} seed {seed}", Path(tmp) / f"curves-{file_stem(arm.id)}-s{seed}.png")
            attach(open_store(folder), self.storage, trial, png)

    def _announce(self, phase: str, ostudy: optuna.Study, items: list[dict], item: dict) -> None:
        if self.progress:
            self._say(progress_line(phase, ostudy, items) + " " + " ".join(f"{k}={v}" for k, v in item.items()))

    def _tune_echo(self, group: str) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
        def echo(ostudy: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            done = len(ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            value = f"val acc {trial.value:.2f}%" if trial.value is not None else trial.state.name.lower()
            params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
            self._say(f"[tune {group} {done}/{self.study.tuning.n_trials}] trial {trial.number}: {value} ({params})")

        return echo

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def _echo(self, phase: str) -> Callable[[dict, str], None]:
        def echo(item: dict, outcome: str) -> None:
            self._say(f"[{phase}] {outcome}: {' '.join(f'{k}={v}' for k, v in item.items())}")

        return echo


def host_running(ostudy: optuna.Study) -> int:
    """RUNNING trials of this phase on this host (this one included): how shared its wall-clock was."""
    host = worker_host()
    return sum(1 for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if str(t.system_attrs.get(WORKER_ATTR, "")).rsplit(":", 1)[0] == host)


def hyperparameter_source(study: Study, storage: optuna.storages.BaseStorage, arm: Arm) -> str:
    """Where an arm's hyperparameters came from, in words a reader can weigh."""
    if not study.tuning.enabled:
        return "fixed recipe (no tuning)"
    group = group_of(study, arm)
    tune = optuna.load_study(study_name=phase_name(study, "tune", group), storage=storage)
    n = len(tune.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if study.tuning.scope == "baseline" and not arm.is_baseline:
        return f"the baseline's tuning ({n} trials of group {group})"
    return f"own tuning ({n} trials of group {group})"


PROFILE_OBJECTIVE = "arms timed"  # a profile item's value: how many arms of its backbone it timed together
TUNE_OBJECTIVE = "best validation accuracy (%)"
FINAL_OBJECTIVE = "test accuracy (%)"  # the last epoch's, never a best-of-epochs


def name_objective(ostudy: optuna.Study, name: str) -> None:
    """Name the phase study's objective (optuna-dashboard shows it instead of 'Objective 0')."""
    if ostudy.metric_names != [name]:
        ostudy.set_metric_names([name])


class LearningCurve:
    """A final trial's validation accuracy per epoch as Optuna intermediate values (the dashboard's
    learning curves). It only records: the callback never stops a run, and the test curve stays in
    the trial's series attribute."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.reported: set[int] = set()

    def report(self, epoch: int, metrics: dict[str, Any]) -> bool:
        self.trial.report(float(metrics["val_acc"]), epoch)
        self.reported.add(epoch)
        return False

    def complete(self, val_acc: list[float] | None) -> None:
        """Report the epochs a resumed run trained before this trial existed."""
        for epoch, acc in enumerate(val_acc or [], start=1):
            if epoch not in self.reported and acc is not None:
                self.report(epoch, {"val_acc": acc})


def scalar_costs(cost: dict[str, Any], batch: int) -> dict[str, Any]:
    """The profile row's headline figures, latency at `batch`, as scalar trial attributes (sortable
    dashboard columns)."""
    pct, low, high = Columns.overhead(Columns.latency_metric(batch))
    out = {"params": cost.get("params"), "macs_full": cost.get("macs_full"),
           f"latency_b{batch}_ms": cost.get(Columns.latency(batch)), f"latency_b{batch}_overhead_pct": cost.get(pct)}
    if cost.get(low) is not None:
        out[f"latency_b{batch}_overhead_ci_pct"] = [cost.get(low), cost.get(high)]
    return {k: v for k, v in out.items() if v is not None}


def checkpoint_path(folder: Path, study: Study, arm: Arm, seed: int, params: dict[str, Any]) -> Path:
    """One file per arm x seed x (spec, tuned values): a re-run after a kill resumes from its last epoch."""
    key = hashlib.sha256(json.dumps([study.fingerprint, params], sort_keys=True, default=str).encode()).hexdigest()
    return folder / f"{file_stem(arm.id)}-seed{seed}-{key[:10]}.pt"


def file_stem(arm_id: str) -> str:
    """An arm id as part of a file name ('cnn/se/after_relu/r16' -> 'cnn_se_after_relu_r16')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", arm_id)


def profile_trials(profile: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """backbone label -> its latest completed profile item: one timing session per backbone, never mixed."""
    latest: dict[str, optuna.trial.FrozenTrial] = {}
    old = superseded(profile)
    for t in sorted(profile.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        if "costs" in t.user_attrs and t.number not in old:
            latest[str(t.params.get("backbone"))] = t
    return latest


def profile_costs(profile: optuna.Study) -> dict[str, dict[str, Any]]:
    """arm id -> its cost row, each backbone's rows from its one latest timing session."""
    costs: dict[str, dict[str, Any]] = {}
    for t in profile_trials(profile).values():
        costs.update(t.user_attrs["costs"])
    return costs


def profile_items(study: Study) -> list[dict[str, Any]]:
    """One item per backbone: its arms are timed together (interleaved rounds need all of them at once)."""
    items = []
    for label in dict.fromkeys(a.backbone.label for a in study.arms):
        items.append({"backbone": label})
    return items


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
    return results_of(claimed(ostudy, ["arm", "seed"])) if ostudy is not None else {}


def results_of(owners: dict[tuple, optuna.trial.FrozenTrial]) -> dict[str, dict[int, float]]:
    """arm -> seed -> test accuracy, from the owning trial of each (arm, seed) item."""
    out: dict[str, dict[int, float]] = {}
    for t in owners.values():
        if t.state == TrialState.COMPLETE and t.value is not None:
            out.setdefault(str(t.params["arm"]), {})[int(t.params["seed"])] = float(t.value)
    return out


def progress_line(phase: str, ostudy: optuna.Study, items: list[dict]) -> str:
    """'[final 3/14 done, 2 running, ETA 4.2 min]': the live view of a phase, from storage."""
    c = counts(ostudy, items, list(items[0]))
    finished = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished
               if t.datetime_complete and t.datetime_start]
    left = c.total - c.complete - c.failed
    eta = f"ETA {sum(seconds) / len(seconds) * left / max(1, c.running) / 60:.1f} min" if seconds else "ETA ?"
    return f"[{phase} {c.complete + c.failed}/{c.total} done, {c.running} running, {eta}]"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# ---------------------------------------------------------------- worker devices


def cuda_device_count() -> int:
    """CUDA GPUs this process sees (one function, so tests can fake a host with several)."""
    return torch.cuda.device_count()


def visible_devices() -> list[str]:
    """This process's CUDA_VISIBLE_DEVICES entries ([] when unset): how its cuda:i map to physical GPUs."""
    return [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]


def describe_device(device: torch.device) -> str:
    """'cpu', 'cuda:0', or 'cuda:0 (physical 2)' where CUDA_VISIBLE_DEVICES renumbers the GPUs: which GPU a
    trial really ran on, recorded on the trial and shown by `ablate status`."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = visible_devices()
    return f"cuda:{index}" + (f" (physical {visible[index]})" if index < len(visible) else "")


def placeable_gpus(study: Study) -> int:
    """GPUs local workers can be spread over: none when the study pins its device (cpu, or one cuda:N)."""
    return cuda_device_count() if study.runtime.device in ("auto", "cuda") else 0


def worker_gpus(workers: int | None, gpus: list[int] | None, per_gpu: int | None, count: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each local worker; None for a CPU worker (its environment left alone).

    Worker i gets GPU i mod k of the k chosen ones (`gpus`, numbered as this process sees them; default
    all `count`), so each child sees one GPU, as cuda:0. Workers share a GPU only when asked: up to
    `per_gpu` on each, and `workers` then defaults to per_gpu x k.
    """
    if workers is not None and workers < 1:
        raise AblateError(f"--workers must be >= 1, got {workers}.")
    if per_gpu is not None and per_gpu < 1:
        raise AblateError(f"--workers-per-gpu must be >= 1, got {per_gpu}.")
    if count == 0:
        if gpus or per_gpu is not None:
            raise AblateError("--gpus / --workers-per-gpu: no CUDA GPU to place workers on (none is visible, or the "
                              "study's runtime.device is cpu or one fixed cuda:N).")
        return [None] * (workers or 1)
    chosen = list(gpus) if gpus else list(range(count))
    bad = [g for g in chosen if not 0 <= g < count]
    if bad or len(set(chosen)) != len(chosen):
        raise AblateError(f"--gpus {','.join(map(str, chosen))}: give distinct GPU numbers from 0 to {count - 1} "
                          f"(this host shows {count} GPU(s)).")
    k = len(chosen)
    if per_gpu is None:
        n = workers or 1
        if n > k:
            raise AblateError(f"--workers {n} is more than the {k} GPU(s) in use, and each worker gets a GPU of "
                              "its own: pass --workers-per-gpu M to run up to M workers on each GPU (--workers then "
                              f"defaults to M x {k}), or choose GPUs with --gpus.")
    else:
        n = workers or per_gpu * k
        if n > per_gpu * k:
            raise AblateError(f"--workers {n} is more than --workers-per-gpu {per_gpu} x {k} GPU(s) = {per_gpu * k}.")
    visible = visible_devices()
    ids = visible[:count] if len(visible) >= count else [str(i) for i in range(count)]
    return [ids[chosen[i % k]] for i in range(n)]


# ---------------------------------------------------------------- what a run leaves behind


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


# ---------------------------------------------------------------- entry points


def run_study(
    study: Study,
    *,
    workers: int | None = 1,
    gpus: list[int] | None = None,
    workers_per_gpu: int | None = None,
    allow_changed_spec: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    data_dir: str | None = None,
    phases: tuple[str, ...] = PHASES,
) -> RunOutcome:
    """The whole study in this process (one worker) or in local worker processes, one per device slot.

    Returns what storage holds afterwards (see `RunOutcome.ok`: did anything fail in this run?).
    """
    devices = worker_gpus(workers, gpus, workers_per_gpu, placeable_gpus(study))  # refused before anything runs
    in_process = len(devices) == 1 and gpus is None and workers_per_gpu is None
    if "profile" in phases:  # the first process of a run: a missing dataset stops it before anything is written
        require_present(study.dataset, data_dir)
    storage = open_storage(study.storage)
    guard_identity(study, storage, allow_changed_spec)
    first = trial_counts(study, storage)
    runner = Runner(study, storage, retry_failed=retry_failed, progress=progress, data_dir=data_dir)
    if "profile" in phases:
        runner.profile()  # before workers start, so timings are not taken on a loaded machine
    rest = tuple(p for p in phases if p != "profile")
    warn_oversubscribed(study, len(devices), progress)
    failed_workers = 0
    if in_process:
        if "tune" in rest:
            runner.tune()
        if "final" in rest:
            runner.final()
    elif rest:
        failed_workers = spawn_workers(study, devices, rest, allow_changed_spec, retry_failed, data_dir, progress)
    return run_outcome(study, storage, first, failed_workers)


def watch(procs: list[subprocess.Popen], study: Study, progress: bool, poll_s: float = 5.0) -> list[int]:
    """Wait for the worker processes, printing the final phase's progress line when it changes."""
    storage, last = open_storage(study.storage) if progress else None, ""
    while any(p.poll() is None for p in procs):
        time.sleep(poll_s)
        if storage is not None and phase_name(study, "final") in optuna.get_all_study_names(storage=storage):
            final = optuna.load_study(study_name=phase_name(study, "final"), storage=storage)
            line = progress_line("final", final, final_items(study, final_results(final)))
            if line != last:
                print(f"{line} ({len(procs)} workers)", file=sys.stderr, flush=True)
                last = line
    return [p.returncode for p in procs]


def warn_oversubscribed(study: Study, workers: int, progress: bool = True) -> bool:
    """Warn when workers x training threads exceed the cores: each worker keeps the study's threads
    (they are numerics), so more workers than fit slow every one of them instead."""
    threads, cores = study.runtime.threads or available_cores(), available_cores()
    if workers * threads <= cores:
        return False
    if progress:
        print(f"warning: {workers} worker(s) x {threads} training thread(s) = {workers * threads} > {cores} cores: "
              "the workers will slow each other down. The thread count is part of the study (it changes float "
              "results), so it is not lowered behind your back: set runtime.threads in the study file (or --threads) "
              f"to {max(1, cores // workers)} for {workers} workers.", file=sys.stderr, flush=True)
    return True


def worker_command(study: Study, phases: tuple[str, ...], allow_changed_spec: bool, retry_failed: bool,
                   data_dir: str | None) -> list[str]:
    """A local worker's argv. The storage URL is not on it (argv is readable by every user of the host
    through ps and /proc): it travels in the worker's environment, see `worker_env`."""
    cmd = [sys.executable, "-m", "ablate", "run", str(study.path), "--phases", ",".join(phases), "--quiet",
           "--worker-process"]
    if study.runtime.threads is not None:  # the file's value or a --threads override: the same fingerprint
        cmd += ["--threads", str(study.runtime.threads)]
    if allow_changed_spec:
        cmd.append("--allow-changed-spec")
    if retry_failed:
        cmd.append("--retry-failed")
    if data_dir:
        cmd += ["--data-dir", data_dir]
    return cmd


def worker_env(study: Study, gpu: str | None) -> dict[str, str]:
    """A local worker's environment: the storage URL ($ABLATE_STORAGE) and, on a GPU host, its one GPU."""
    env = {**os.environ, STORAGE_ENV: study.storage}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def spawn_workers(study: Study, devices: list[str | None], phases: tuple[str, ...], allow_changed_spec: bool,
                  retry_failed: bool, data_dir: str | None, progress: bool = True) -> int:
    """One local `ablate run` process per entry of `devices` (its CUDA_VISIBLE_DEVICES, or None: CPU), on
    the same storage, each with the study's own thread count. Returns how many exited 1 (items failed)."""
    cmd = worker_command(study, phases, allow_changed_spec, retry_failed, data_dir)
    procs = [subprocess.Popen(cmd, env=worker_env(study, gpu)) for gpu in devices]
    try:
        codes = watch(procs, study, progress)
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    if any(c not in (0, 1) for c in codes):
        raise AblateError(f"{sum(1 for c in codes if c)} of {len(procs)} workers failed (exit codes {codes}); "
                          "re-run the same command to resume.")
    return sum(1 for c in codes if c == 1)


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
            row["items_left"] = counts(ostudy, phase_items, list(phase_items[0])).todo if ostudy else len(phase_items)
        else:
            row["items"] = study.tuning.n_trials
            row["items_left"] = max(0, study.tuning.n_trials - row["complete"] - row["pruned"])
        rows.append(row)
    return pd.DataFrame(rows)


def running_frame(study: Study, storage: optuna.storages.BaseStorage | None = None) -> pd.DataFrame:
    """Every RUNNING trial: its item, worker (host:pid), device, and whether that worker is alive. Read-only."""
    storage = storage or open_storage(study.storage, read_only=True)
    rows = []
    for name, ostudy in phase_studies(study, storage).items():
        if ostudy is None:
            continue
        dead = dead_trial_ids(ostudy)
        for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            rows.append({"phase": name, "trial": t.number,
                         "item": " ".join(f"{k}={v}" for k, v in t.params.items()),
                         "worker": t.system_attrs.get(WORKER_ATTR, "?"), "device": t.user_attrs.get(DEVICE_ATTR, "?"),
                         "state": "dead" if t._trial_id in dead else "running",
                         "started": t.datetime_start.strftime("%Y-%m-%d %H:%M:%S") if t.datetime_start else "?"})
    return pd.DataFrame(rows, columns=["phase", "trial", "item", "worker", "device", "state", "started"])
