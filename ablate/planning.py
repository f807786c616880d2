"""What a study plans to run: its phases' Optuna study names, tuning groups, and the work items each phase wants.

Planning reads the study (its arms, tuning scope, baselines, seeds and seed plan) and, for an
adaptive seed plan, the results so far; it writes nothing. The runner, the workers, status, plan and
the report all ask here, so every one of them agrees on which items exist. How items, trials and
attributes are stored and who owns an item is the storage contract (`ablate.contract`), which knows
nothing of a study file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import stats

if TYPE_CHECKING:
    from .arms import Arm
    from .spec import Study


def phase_name(study: Study, phase: str, group: str | None = None) -> str:
    """The Optuna study name of a phase: `<study>/profile`, `<study>/tune/<group>` or `<study>/final`."""
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


def profile_items(study: Study) -> list[dict[str, Any]]:
    """One item per backbone: its arms are timed together (interleaved rounds need all of them at once)."""
    items = []
    for label in dict.fromkeys(a.backbone.label for a in study.arms):
        items.append({"backbone": label})
    return items


def final_items(study: Study, results: dict[str, dict[int, float]] | None = None) -> list[dict[str, Any]]:
    """Every arm x seed the final phase wants now, baselines first within each seed.

    With a fixed seed list that is every arm x seed. With a SeedPlan it depends on the results so far
    (`results`: arm -> seed -> test accuracy, see `ablate.contract.final_results`): see `wanted_seeds`.
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
    from .datasets import dataset_info  # the dataset layer (torch) only where a seed plan asks for the test size

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
