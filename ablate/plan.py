"""What a study will cost before it runs: arms, trial counts, MACs x samples, a measured step time.

The estimate multiplies a measured training-step time (forward + backward + optimizer step on a
random batch of the recipe's batch size, on the study's device, the arms timed in interleaved
rounds by ablate.timing) by the number of steps every phase will take. MACs alone mislead (attention
gates are memory-bound), so the time is measured. Image counts come from the dataset's metadata and
are checked against what it holds, so a plan never promises images that do not exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from .arms import Arm
from .bounds import DAY_S, timing_seconds
from .costs import static_costs
from .device import available_cores, resolve_device
from .models import build_model
from .planning import tuning_groups
from .preflight import check_study_sizes, dataset_counts
from .spec import Study
from .startup_probe import study_startup
from .timing import Setting, time_interleaved, train_block
from .train import make_optimizer


def step_times_ms(study: Study, shape: tuple[int, int, int], num_classes: int) -> dict[str, float]:
    """arm id -> training-step time (ms) at the recipe's batch size, every backbone's arms interleaved.

    A rough plan, so a few short rounds; the study's training threads and precision, as the runs use.
    """
    device = resolve_device(study.runtime.device)
    setting = Setting(device=str(device), precision=study.runtime.precision(device),
                      channels_last=study.runtime.channels_last, threads=study.runtime.threads or available_cores(),
                      rounds=3, blocks=1, block_time=0.05, warmup=2, fresh=False)
    out: dict[str, float] = {}
    for label in dict.fromkeys(a.backbone.label for a in study.arms):
        arms = [a for a in study.arms if a.backbone.label == label]
        def maker(arm: Arm) -> Callable[[], Callable[[], None]]:
            model = build_model(**arm.build_kwargs(), num_classes=num_classes, in_channels=shape[0],
                                input_size=shape[1])
            return lambda: train_block(model, study.recipe.batch_size, shape, num_classes, setting,
                                       lambda m: make_optimizer(m, study.recipe, device))

        summaries, _ = time_interleaved({a.id: maker(a) for a in arms}, setting)
        out.update({arm_id: s.median_s * 1e3 for arm_id, s in summaries.items()})
    return out


def plan_frame(study: Study, timing: bool = True) -> pd.DataFrame:
    info = dataset_counts(study)
    check_study_sizes(study, info)  # before MACs are counted or a step is timed on tensors of these sizes
    shape = (info.in_channels, info.input_size, info.input_size)
    rows: list[dict[str, Any]] = []
    for arm in study.arms:
        model = build_model(**arm.build_kwargs(), num_classes=info.num_classes, in_channels=shape[0],
                            input_size=shape[1])
        cost = static_costs(model, shape)  # the profile phase's own static columns, counted the same way
        rows.append({**arm.factors(), "params": cost["params"], "macs_full": cost["macs_full"],
                     "hidden": cost["hidden"], "maps": cost["feature_maps"]})
    if timing:
        steps = step_times_ms(study, shape, info.num_classes)
        for row in rows:
            row["step_ms"] = steps[row["arm"]]
    frame = pd.DataFrame(rows).astype({"reduction": "Int64"})
    return frame.drop(columns=["knobs"] if all(r["knobs"] is None for r in rows) else [])


def plan_notes(study: Study) -> list[str]:
    """What the reader should know about the grid: collapsed arms, and backbones without a baseline."""
    with_baseline = set(study.baselines)
    missing = [label for label in dict.fromkeys(a.backbone.label for a in study.arms) if label not in with_baseline]
    notes = list(study.notes)
    if missing:
        notes.append(f"no 'none' arm for {', '.join(missing)}: there is no baseline there, so no difference "
                     "against it is computed; add 'none' to grid.attention to compare with it.")
    return notes


def profile_seconds(study: Study) -> float:
    """The profile phase's timing work: every arm, every round, each batch size (and the training step),
    a few blocks of block_time each (warm-up and calibration not counted)."""
    m = study.measure
    return timing_seconds(len(study.arms), len(m.batch_sizes) + m.train_step, m.rounds, Setting.blocks, m.block_time)


def long_run_warning(serial_s: float, parallel_s: float, items: int) -> list[str]:
    """A loud line when one worker would take over a day, with the workers that bring it under one (the
    profile phase runs before workers start, so it does not shrink)."""
    if serial_s + parallel_s <= DAY_S:
        return []
    if serial_s >= DAY_S:
        return [f"WARNING: the profile phase alone takes {serial_s / 3600:,.1f} h (it runs before any worker starts): "
                "lower measure.rounds, measure.block_time or measure.batch_sizes."]
    workers = math.ceil(parallel_s / (DAY_S - serial_s))
    every = f"{items} worker{'' if items == 1 else 's'}"  # one per item
    advice = (f"--workers {workers} (or that many machines on one database storage) bring it under a day"
              if workers <= items else f"even {every} (one per item) cannot bring it under a day")
    total = serial_s + parallel_s
    return [f"WARNING: this study takes {total / 3600:,.1f} h ({total / DAY_S:,.1f} days) for one worker; {advice}; "
            "or lower recipe.epochs, seeds or the grid."]


def plan_summary(study: Study, frame: pd.DataFrame) -> list[str]:
    info = dataset_counts(study)
    n_arms, n_seeds = len(study.arms), len(study.seeds)
    n_backbones = len({a.backbone.label for a in study.arms})
    plan = study.seed_plan
    seeds_text = (f"{plan.min} to {plan.max} per arm, precision-targeted (CI half-width {plan.target_ci_pp:g} pp); "
                  f"counts and times below assume the worst case, {plan.max}" if plan else str(n_seeds))
    train_n = info.train_count
    steps_per_epoch = math.ceil(train_n / study.recipe.batch_size)
    t = study.tuning
    groups = len(tuning_groups(study)) if t.enabled else 0  # scope 'baseline' needs a baseline: only when tuning
    tune_trials = groups * t.n_trials
    lines = [
        f"arms: {n_arms}; seeds: {seeds_text}; dataset: {study.dataset.name} ({train_n} train images per epoch, "
        f"{info.in_channels}x{info.input_size}x{info.input_size}, {info.num_classes} classes)",
        f"trials: {n_backbones} profile (one per backbone, its arms timed together) + {tune_trials} tuning "
        f"({groups} group(s) x {t.n_trials}, scope {t.scope}, "
        f"{t.epochs} epoch(s) each) + {n_arms * n_seeds} final ({study.recipe.epochs} epochs each)"
        if t.enabled else f"trials: {n_backbones} profile (one per backbone) + 0 tuning (off) + "
        f"{n_arms * n_seeds} final "
        f"({study.recipe.epochs} epochs each)",
    ]
    train_macs = 3 * frame["macs_full"] * train_n * study.recipe.epochs * n_seeds  # fwd + ~2x for backward
    lines.append(f"training compute (final phase): {train_macs.sum() / 1e12:.3g} TMACs "
                 "(3 x forward MACs x samples x epochs x seeds)")
    profile_s = profile_seconds(study)
    if "step_ms" not in frame:  # no step timing (--no-timing): the profile phase alone can still take days
        lines += long_run_warning(profile_s, 0.0, n_arms * n_seeds)
    lines.append(f"profile phase: about {profile_s / 60:.1f} min ({n_arms} arms x {study.measure.rounds} rounds x "
                 f"{len(study.measure.batch_sizes) + study.measure.train_step} timings x {Setting.blocks} blocks of "
                 f"{study.measure.block_time:g} s)")
    if "step_ms" in frame:
        final_s = (frame["step_ms"] / 1000 * steps_per_epoch * study.recipe.epochs * n_seeds).sum()
        tune_s = 0.0
        if t.enabled:
            mean_step = frame["step_ms"].mean() / 1000
            tune_s = tune_trials * mean_step * steps_per_epoch * t.epochs
        total_h = (profile_s + final_s + tune_s) / 3600
        lines.append(
            f"estimated time on {resolve_device(study.runtime.device)}: profile {profile_s / 60:.1f} min + final "
            f"{final_s / 60:.1f} min + tuning {tune_s / 60:.1f} min = {total_h:,.2f} h for one worker (measured step "
            "times; evaluation and data time not included)"
        )
        lines += long_run_warning(profile_s, final_s + tune_s, n_arms * n_seeds + tune_trials)
        lines.append(f"worker start-up (measured in a fresh process): {study_startup(study).line()}; "
                     "each worker pays it once")
    return lines
