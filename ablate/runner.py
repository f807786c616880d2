"""Run a study: profile every arm once, tune hyperparameters, train every arm x seed, resumably.

Each phase is an Optuna study in the study's storage, named `<study>/profile`, `<study>/tune/<group>`
and `<study>/final` (see `ablate.planning`). Storage is the ledger: re-running the same command
continues where it stopped, and the report is regenerated from storage alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import Trial, TrialState

from .arms import Arm
from .artifacts import artifact_dir, attach, curve_figure, open_store
from .contract import (
    COSTS_ATTR,
    ENV_ATTR,
    FINAL_KEYS,
    FINAL_OBJECTIVE,
    HOST_ATTR,
    HP_PREFIX,
    HYPERPARAMETERS_ATTR,
    PHASES,
    PROFILE_OBJECTIVE,
    ROUNDS_ATTR,
    SERIES_ATTR,
    TUNE_ARM_ATTR,
    TUNE_OBJECTIVE,
    claimed,
    final_results,
    profile_costs,
    profile_trials,
    set_worker,
    worker_host_pid,
)
from .costs import Columns, TrainStep, profile_backbone
from .datasets import dataset_info, require_present
from .device import available_cores, device_name, resolve_device
from .errors import AblateError
from .identity import guard_identity
from .memory import check_workers
from .planning import final_items, group_of, phase_name, profile_items, tuning_groups
from .preempt import PREEMPTION
from .preflight import check_study_sizes, dataset_counts
from .provenance import environment, mismatch_warning
from .spec import Param, Study
from .startup import timed_load
from .status import RunOutcome, progress_line, run_outcome, trial_counts
from .storage import knowingly_experimental, open_storage, optuna_info_off, reap_dead_trials, worker_host, worker_id
from .switches import set_cublas_workspace
from .timing import Setting
from .train import NonFiniteLossError, make_optimizer, model_factory, train
from .workers import describe_device, placeable_gpus, spawn_workers, warn_oversubscribed, worker_attrs, worker_gpus
from .workqueue import ItemFailed, run_items, supersede, wait_until_idle


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


class TunedParams:
    """Each arm's tuned hyperparameters, every tuning group's study read once per run: the final phase asks
    at every arm x seed, and each load of a tuning study reads all its trials."""

    def __init__(self, study: Study, storage: optuna.storages.BaseStorage) -> None:
        self.study = study
        self.storage = storage
        self._best: dict[str, tuple[dict[str, Any], int]] = {}  # group -> (best params, completed trials)

    def __call__(self, arm: Arm) -> tuple[dict[str, Any], str]:
        """(hyperparameters, where they came from in words a reader can weigh) for `arm`: the best completed
        trial of its tuning group ({} and the fixed recipe when tuning is off)."""
        if not self.study.tuning.enabled:
            return {}, "fixed recipe (no tuning)"
        group = group_of(self.study, arm)
        if group not in self._best:
            self._best[group] = self._load(group)
        params, n = self._best[group]
        whose = "the baseline's" if self.study.tuning.scope == "baseline" and not arm.is_baseline else "own"
        return dict(params), f"{whose} tuning ({n} trials of group {group})"

    def _load(self, group: str) -> tuple[dict[str, Any], int]:
        tune = optuna.load_study(study_name=phase_name(self.study, "tune", group), storage=self.storage)
        complete = tune.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise AblateError(f"tuning of {group!r} has no completed trial; see `ablate status`.")
        return dict(max(complete, key=lambda t: t.value).params), len(complete)


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

    def profile_study(self) -> optuna.Study:
        """The profile phase's Optuna study, created when missing (`--phases final` alone reads it too)."""
        ostudy = optuna.create_study(study_name=phase_name(self.study, "profile"), storage=self.storage,
                                     load_if_exists=True)
        name_objective(ostudy, PROFILE_OBJECTIVE)
        return ostudy

    def profile(self) -> None:
        ostudy = self.profile_study()
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
            return float(len(rows)), {COSTS_ATTR: _jsonable({r["arm"]: r for r in rows}),
                                      ROUNDS_ATTR: _jsonable(record), HOST_ATTR: record["host"]}

        for label, t in profile_trials(ostudy).items():  # a backbone that gained arms is re-timed as a whole,
            wanted = {a.id for a in self.study.arms if a.backbone.label == label}  # never mixed with old rows
            if not wanted <= set(t.user_attrs[COSTS_ATTR]):
                supersede(ostudy, t)
        run_items(ostudy, items, work, retry_failed=self.retry_failed, on_item_done=self._echo("profile"),
                  claim_attrs=worker_attrs(describe_device(torch.device(self.timing_setting().device))))

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
            with knowingly_experimental():  # optimize fails stale trials itself when heartbeats are on
                ostudy.optimize(
                    self._tune_objective(arm),
                    callbacks=[optuna.study.MaxTrialsCallback(t.n_trials,
                                                              states=(TrialState.COMPLETE, TrialState.PRUNED)),
                               self._tune_echo(group)],
                    catch=(NonFiniteLossError, torch.OutOfMemoryError),
                )
        wait_until_idle(studies)

    def _tune_objective(self, arm: Arm) -> Callable[[Trial], float]:
        def objective(trial: Trial) -> float:
            set_worker(trial, worker_id())
            for key, value in worker_attrs(self.worker_device).items():
                trial.set_user_attr(key, value)
            params = suggest(trial, self.study.tuning.space)
            recipe = dataclasses.replace(self.study.recipe, epochs=self.study.tuning.epochs, **params)

            def report(epoch: int, metrics: dict[str, Any]) -> bool:
                trial.report(metrics["val_acc"], epoch)  # prune on validation only
                if trial.should_prune():
                    raise optuna.TrialPruned()
                return False

            result = train(model_factory(**arm.build_kwargs()), self.data(), recipe, runtime=self.study.runtime,
                           seed=self.study.seeds[0], eval_split="val", on_epoch_end=report, progress=False)
            trial.set_user_attr(TUNE_ARM_ATTR, arm.id)
            return float(result.best_acc)

        return objective

    # -- phase 3: every arm x seed, validation deciding, the test split recorded and reported
    def final(self) -> None:
        ostudy = optuna.create_study(study_name=phase_name(self.study, "final"), storage=self.storage,
                                     direction="maximize", load_if_exists=True)
        name_objective(ostudy, FINAL_OBJECTIVE)
        costs = profile_costs(self.profile_study())  # `--phases final` alone: no cost rows yet
        arms = {a.id: a for a in self.study.arms}
        ckpt_dir = self.study.run_dir / "checkpoints"
        tuned_params = TunedParams(self.study, self.storage)
        self._rerun_changed_training(ostudy, arms, tuned_params)
        items = final_items(self.study, final_results(ostudy))
        env = environment(self.worker_device, self.study.runtime.threads or available_cores())
        warning = mismatch_warning(env, (t.user_attrs.get(ENV_ATTR) for t in ostudy.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,))))
        if warning:
            print(warning, file=sys.stderr, flush=True)  # even --quiet: it changes what the report can promise

        def work(trial: Trial, item: dict) -> tuple[float, dict[str, Any]]:
            self._announce("final", ostudy, items, item)
            arm = arms[item["arm"]]
            params, hp_source = tuned_params(arm)
            recipe = dataclasses.replace(self.study.recipe, **params)
            ckpt = checkpoint_path(ckpt_dir, self.study, arm, item["seed"], params)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            sharing = host_running(ostudy)
            curve = LearningCurve(trial)
            try:  # the validation split (dataset val_fraction) steers; test is evaluated per epoch, recorded only
                data = self.data()
                with PREEMPTION.deferred():  # SIGTERM stops at the next safe point, checkpoint saved (ablate.preempt)
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
            series = {k: measured.pop(k) for k in list(measured)
                      if isinstance(measured[k], list) or k == "test_correct"}
            cost = costs.get(arm.id, {})
            attrs = {**arm.factors(), "seed": item["seed"], "spec_fingerprint": self.study.fingerprint,
                     HYPERPARAMETERS_ATTR: _jsonable(params),
                     "hp_source": hp_source,
                     **{f"{HP_PREFIX}{k}": v for k, v in _jsonable(params).items()},
                     "recipe": _jsonable(dataclasses.asdict(recipe)),
                     "dataset": _jsonable(self.study.dataset.as_dict()), "checkpoint": str(ckpt),
                     **scalar_costs(cost, min(self.study.measure.batch_sizes)),
                     "train_threads": self.study.runtime.threads or available_cores(),
                     HOST_ATTR: worker_host(), ENV_ATTR: env, "trials_sharing_host": max(sharing, host_running(ostudy)),
                     **measured, SERIES_ATTR: series}
            self._attach_curves(trial, arm, item["seed"], series)
            return float(result.final_acc), attrs  # the last epoch's test accuracy, never a best-of-epochs

        while True:  # with a SeedPlan, seeds are added as results show which arms still lack precision
            run_items(ostudy, items, work, retry_failed=self.retry_failed, on_item_done=self._echo("final"),
                      claim_attrs=worker_attrs(self.worker_device))
            if self.study.seed_plan is None:
                return
            wait_until_idle([ostudy])  # other workers' results decide what comes next, too
            more = final_items(self.study, final_results(ostudy))
            if more == items:
                return
            added = [i for i in more if i not in items]
            self._say(f"[final] precision target not met yet: adding {len(added)} item(s): "
                      + ", ".join(f"{i['arm']} seed {i['seed']}" for i in added[:6])
                      + (" ..." if len(added) > 6 else ""))
            items = more

    def _rerun_changed_training(self, ostudy: optuna.Study, arms: dict[str, Arm], tuned_params: TunedParams) -> None:
        """Results trained with other settings never count beside new ones (`--allow-changed-spec`): a complete
        item of an older study file whose recipe (with its tuned values) or dataset section differs from what
        it would be trained with now is superseded, so it runs again; the others are kept."""
        changed = []
        for t in claimed(ostudy, FINAL_KEYS).values():
            arm = arms.get(str(t.params.get("arm")))
            attrs = t.user_attrs
            if t.state != TrialState.COMPLETE or arm is None or attrs.get("spec_fingerprint") == self.study.fingerprint:
                continue
            recipe = dataclasses.replace(self.study.recipe, **tuned_params(arm)[0])
            now = {"recipe": _jsonable(dataclasses.asdict(recipe)), "dataset": _jsonable(self.study.dataset.as_dict())}
            if any(key in attrs and attrs[key] != value for key, value in now.items()) or "recipe" not in attrs:
                supersede(ostudy, t)
                changed.append(f"{arm.id} seed {t.params.get('seed')}")
        if changed:  # said even with --quiet: results are being replaced
            print(f"[final] training settings changed since {len(changed)} item(s) ran; re-running them: "
                  + ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else ""), file=sys.stderr, flush=True)

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
               if worker_host_pid(t)[0] == host)


def name_objective(ostudy: optuna.Study, name: str) -> None:
    """Name the phase study's objective (optuna-dashboard shows it instead of 'Objective 0')."""
    if ostudy.metric_names != [name]:
        with knowingly_experimental():
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


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


@optuna_info_off()  # ablate prints its own progress; Optuna's level is put back after
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
    if study.runtime.deterministic:
        set_cublas_workspace()  # before the profile phase's CUDA work: cuBLAS reads it once per process
    if len(devices) > 1:
        check_workers(len(devices))  # each idle worker takes ~790 MB: thirty would exhaust the host
    resolve_device(study.runtime.device)  # a device this machine lacks is refused before storage exists
    if "profile" in phases:
        resolve_device(study.measure.device)
    in_process = len(devices) == 1 and gpus is None and workers_per_gpu is None
    if "profile" in phases:  # the first process of a run: a missing dataset stops it before anything is written
        require_present(study.dataset, data_dir)
        check_study_sizes(study, dataset_counts(study))  # a batch or input that cannot fit, likewise
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
