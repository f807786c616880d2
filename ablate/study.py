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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import Trial, TrialState

from .arms import Arm
from .data import load_data, require_present
from .errors import AblateError
from .measure import profile_model
from .spec import Param, Study
from .storage import WORKER_ATTR, mask_url, open_storage, reap_dead_trials, worker_id
from .device import device_name, resolve_device
from .train import NonFiniteLossError, model_factory, train
from .workqueue import ItemFailed, counts, run_items, wait_until_idle

PHASES = ("profile", "tune", "final")


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
        final.set_user_attr("spec", json.loads(json.dumps(study.document, default=str)))
        return final
    if attrs["fingerprint"] == study.fingerprint:
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
    final.set_user_attr("spec", json.loads(json.dumps(study.document, default=str)))
    return final


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

    def data(self) -> Any:
        if self._data is None:
            self._data = load_data(self.study.dataset, self.data_dir, self.device)
        return self._data

    def build(self, arm: Arm) -> torch.nn.Module:
        return model_factory(**arm.build_kwargs())(self.data().meta)

    def input_shape(self) -> tuple[int, int, int]:
        meta = self.data().meta
        return (meta.in_channels, meta.input_size, meta.input_size)

    # -- phase 1: cost, once per arm
    def profile(self) -> None:
        ostudy = optuna.create_study(study_name=phase_name(self.study, "profile"), storage=self.storage, load_if_exists=True)
        items = profile_items(self.study)
        arms = {a.id: a for a in self.study.arms}
        m = self.study.measure
        device = self.device if m.device == "auto" else torch.device(m.device)

        def work(trial: Trial, item: dict) -> tuple[float, dict[str, Any]]:
            arm = arms[item["arm"]]
            try:
                model, shape = self.build(arm), self.input_shape()
            except AblateError as err:  # the dataset vanished: recorded, retried by the next run
                raise ItemFailed(str(err), retry=True) from None
            row = profile_model(model, shape, device=device, batch_sizes=m.batch_sizes, min_run_time=m.min_run_time)
            row["device_name"] = device_name(device)
            return float(row["params"]), {"cost": _jsonable(row), **arm.factors()}

        run_items(ostudy, items, work, retry_failed=self.retry_failed, on_item_done=self._echo("profile"))

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
            params = suggest(trial, self.study.tuning.space)
            recipe = dataclasses.replace(self.study.recipe, epochs=self.study.tuning.epochs, **params)

            def report(epoch: int, metrics: dict[str, Any]) -> bool:
                trial.report(metrics["eval_acc"], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
                return False

            result = train(model_factory(**arm.build_kwargs()), self.data(), recipe, runtime=self.study.runtime,
                           seed=self.study.seeds[0], eval_split="val", on_epoch_end=report, progress=False)
            trial.set_user_attr("arm", arm.id)
            return float(result.best_acc)

        return objective

    # -- phase 3: every arm x seed on the test split
    def final(self) -> None:
        ostudy = optuna.create_study(study_name=phase_name(self.study, "final"), storage=self.storage,
                                     direction="maximize", load_if_exists=True)
        profile = optuna.load_study(study_name=phase_name(self.study, "profile"), storage=self.storage)
        costs = {t.user_attrs.get("arm"): t.user_attrs.get("cost", {}) for t in profile.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,))}
        arms = {a.id: a for a in self.study.arms}
        items = final_items(self.study)
        ckpt_dir = self.study.run_dir / "checkpoints"

        def work(trial: Trial, item: dict) -> tuple[float, dict[str, Any]]:
            self._announce("final", ostudy, items, item)
            arm = arms[item["arm"]]
            params = tuned_params(self.study, self.storage, arm)
            recipe = dataclasses.replace(self.study.recipe, **params)
            ckpt = checkpoint_path(ckpt_dir, self.study, arm, item["seed"], params)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            try:
                result = train(model_factory(**arm.build_kwargs()), self.data(), recipe, runtime=self.study.runtime, seed=item["seed"],
                               eval_split="test", checkpoint_path=ckpt, progress=self.progress)
            except NonFiniteLossError as err:
                raise ItemFailed(f"non-finite loss: {err}") from None
            except torch.OutOfMemoryError as err:
                raise ItemFailed(f"out of memory: {str(err).splitlines()[0]}") from None
            except AblateError as err:  # e.g. the dataset vanished: recorded, retried by the next run
                raise ItemFailed(str(err), retry=True) from None
            attrs = {**arm.factors(), "seed": item["seed"], "spec_fingerprint": self.study.fingerprint,
                     "hyperparameters": _jsonable(params), "recipe": _jsonable(dataclasses.asdict(recipe)),
                     "checkpoint": str(ckpt), "cost": costs.get(arm.id, {}), **_jsonable(result.as_dict())}
            return float(result.final_acc), attrs

        run_items(ostudy, items, work, retry_failed=self.retry_failed, on_item_done=self._echo("final"))

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


def checkpoint_path(folder: Path, study: Study, arm: Arm, seed: int, params: dict[str, Any]) -> Path:
    """One file per arm x seed x (spec, tuned values): a re-run after a kill resumes from its last epoch."""
    key = hashlib.sha256(json.dumps([study.fingerprint, params], sort_keys=True, default=str).encode()).hexdigest()
    return folder / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', arm.id)}-seed{seed}-{key[:10]}.pt"


def profile_items(study: Study) -> list[dict[str, Any]]:
    return [{"arm": a.id} for a in study.arms]


def final_items(study: Study) -> list[dict[str, Any]]:
    return [{"arm": a.id, "seed": s} for a in study.arms for s in study.seeds]


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


# ---------------------------------------------------------------- entry points


def run_study(
    study: Study,
    *,
    workers: int = 1,
    allow_changed_spec: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    data_dir: str | None = None,
    phases: tuple[str, ...] = PHASES,
) -> None:
    """The whole study in this process (workers=1) or in N local worker processes."""
    if "profile" in phases:  # the first process of a run: a missing dataset stops it before anything is written
        require_present(study.dataset, data_dir)
    storage = open_storage(study.storage)
    guard_identity(study, storage, allow_changed_spec)
    runner = Runner(study, storage, retry_failed=retry_failed, progress=progress, data_dir=data_dir)
    if "profile" in phases:
        runner.profile()  # before workers start, so timings are not taken on a loaded machine
    rest = tuple(p for p in phases if p != "profile")
    if workers <= 1:
        if "tune" in rest:
            runner.tune()
        if "final" in rest:
            runner.final()
        return
    spawn_workers(study, workers, rest, allow_changed_spec, retry_failed, data_dir, progress)


def watch(procs: list[subprocess.Popen], study: Study, progress: bool, poll_s: float = 5.0) -> list[int]:
    """Wait for the worker processes, printing the final phase's progress line when it changes."""
    storage, items, last = open_storage(study.storage), final_items(study), ""
    while any(p.poll() is None for p in procs):
        time.sleep(poll_s)
        if progress and phase_name(study, "final") in optuna.get_all_study_names(storage=storage):
            line = progress_line("final", optuna.load_study(study_name=phase_name(study, "final"), storage=storage),
                                 items)
            if line != last:
                print(f"{line} ({len(procs)} workers)", file=sys.stderr, flush=True)
                last = line
    return [p.returncode for p in procs]


def spawn_workers(study: Study, workers: int, phases: tuple[str, ...], allow_changed_spec: bool,
                  retry_failed: bool, data_dir: str | None, progress: bool = True) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    cmd = [sys.executable, "-m", "ablate", "run", str(study.path), "--storage", study.storage,
           "--phases", ",".join(phases), "--quiet", "--threads", str(threads)]
    if allow_changed_spec:
        cmd.append("--allow-changed-spec")
    if retry_failed:
        cmd.append("--retry-failed")
    if data_dir:
        cmd += ["--data-dir", data_dir]
    procs = [subprocess.Popen(cmd) for _ in range(workers)]
    try:
        codes = watch(procs, study, progress)
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    if any(codes):
        raise AblateError(f"{sum(1 for c in codes if c)} of {workers} workers failed (exit codes {codes}); "
                          "re-run the same command to resume.")


def status_frame(study: Study) -> pd.DataFrame:
    """Per phase: trials complete / running / failed / pruned / waiting, and work items left."""
    storage = open_storage(study.storage)
    names = set(optuna.get_all_study_names(storage=storage))
    rows = []
    items = {"profile": profile_items(study), "final": final_items(study)}
    wanted = [phase_name(study, "profile")]
    if study.tuning.enabled:
        wanted += [phase_name(study, "tune", g) for g in tuning_groups(study)]
    wanted.append(phase_name(study, "final"))
    for name in wanted:
        row: dict[str, Any] = {"phase": name}
        ostudy = optuna.load_study(study_name=name, storage=storage) if name in names else None
        trials = ostudy.get_trials(deepcopy=False) if ostudy is not None else []
        for state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL, TrialState.PRUNED, TrialState.WAITING):
            row[state.name.lower()] = sum(t.state == state for t in trials)
        phase_items = items.get(name.split("/")[1])
        if phase_items is not None:
            row["items"] = len(phase_items)
            row["items_left"] = counts(ostudy, phase_items, list(phase_items[0])).todo if ostudy else len(phase_items)
        else:
            row["items"] = study.tuning.n_trials
            row["items_left"] = max(0, study.tuning.n_trials - row["complete"] - row["pruned"])
        rows.append(row)
    return pd.DataFrame(rows)
