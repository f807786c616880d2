"""The report's tables: one row per arm aggregated over seeds, and one table per swept factor.

Accuracy is summarised over seeds (mean, std, t-based 95% CI carrying seed and test-image noise)
and compared with the baseline of the same backbone by the blocked analysis of ablate.stats (all
arms share seeds; paired or Welch where they do not), plus the test set's variance component,
Holm-corrected across every arm of the study, with the minimum detectable effect and the per-arm
paired check beside it. Per-image tests (McNemar, image bootstrap) run one seed at a time: they
say whether two trained networks differ, never whether an arm is better. Static costs are shown
as % over that baseline; measured times as the overheads of interleaved timing with their CIs
(ablate.timing), because FLOPs hide latency. Time to the baseline's accuracy is read off the
validation curve, censored runs kept.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import stats
from ..columns import Columns, add_baseline_deltas, overhead_text
from ..datasets import dataset_info
from ..records import decode_correct, time_to_target
from .collect import Collected

FACTOR_COLUMNS = ("arm", "backbone", "attention", "position", "reduction", "hidden", "stages", "knobs")
SWEEPABLE = ("backbone", "position", "reduction", "stages", "knobs")


def timed_columns(batch_sizes: Sequence[int]) -> list[str]:
    """Every measured cost column a profile row can carry (ablate.columns.Columns), in display order."""
    cols: list[str] = []
    for b in batch_sizes:
        cols += [Columns.latency(b), Columns.latency_iqr(b), Columns.throughput(b), Columns.peak_mem(b),
                 *Columns.overhead(Columns.latency_metric(b))]
    return cols + [Columns.TRAIN_STEP_MS, Columns.TRAIN_STEP_IQR, *Columns.overhead(Columns.TRAIN_STEP)]


SMALL_BATCH = ("latency", "latency_overhead_pct", "latency_overhead_ci_low_pct", "latency_overhead_ci_high_pct")


def _to_target(curves: pd.DataFrame, target: float) -> tuple[int | None, float | None, bool, int, float]:
    """One run: (epochs, training seconds, censored, epochs run, training seconds run) to reach
    `target` on its validation curve (the one definition, ablate.train.time_to_target; evaluation
    time excluded). The last two are what a censored run is known to have taken at least."""
    curve = curves["val_acc"] if curves["val_acc"].notna().all() else curves["eval_acc"]
    seconds_per_epoch = [float(s or 0.0) for s in curves["train_time_s"]]
    epochs, seconds, censored = time_to_target([float(a) for a in curve], seconds_per_epoch, target)
    return epochs, seconds, censored, len(curves), sum(seconds_per_epoch)


def _censored_median(values: list[float | None], bounds: list[float]) -> tuple[float, bool]:
    """Median over runs where a censored run (None) counts as beyond its bound: (value, censored?)."""
    keyed = sorted(((v, False) if v is not None else (b, True) for v, b in zip(values, bounds)),
                   key=lambda x: (x[1], x[0]))  # censored runs sort last: they took longer than anything seen
    if not keyed:
        return math.nan, False
    mid = keyed[(len(keyed) - 1) // 2]  # the lower median: a censored run is never averaged with a time
    return float(mid[0]), mid[1]


def _correct_by_seed(runs: pd.DataFrame, n_images: int) -> dict[int, np.ndarray]:
    """seed -> per-image correctness of one arm's runs (runs that stored none are left out)."""
    if n_images < 1:
        return {}
    return {int(s): decode_correct(v, n_images) for s, v in zip(runs["seed"], runs["test_correct"])
            if isinstance(v, str)}


def _acc_by_seed(runs: pd.DataFrame) -> dict[int, float]:
    return {int(s): float(a) for s, a in zip(runs["seed"], runs["acc"]) if math.isfinite(float(a))}


@dataclass(frozen=True)
class _Arm:
    """What one arm's comparison needs: accuracies and per-image correctness by seed."""

    acc: dict[int, float]
    correct: dict[int, np.ndarray]

    def images(self, seeds: Sequence[int]) -> np.ndarray | None:
        return np.stack([self.correct[s] for s in seeds]) if all(s in self.correct for s in seeds) else None


def _block(base: _Arm, arms: dict[str, _Arm]) -> tuple[list[int], dict[str, tuple[float, float]], tuple[float, float]]:
    """The blocked design of one backbone: the seeds every comparable arm shares with the baseline, the
    pooled residual of all those arms (baseline first), and per arm the residual of the others."""
    paired = {a: sorted(set(x.acc) & set(base.acc)) for a, x in arms.items()}
    paired = {a: s for a, s in paired.items() if len(s) >= 2}
    common = sorted(set.intersection(*(set(s) for s in paired.values()))) if paired else []
    if len(common) < 2:
        return common, {}, (math.nan, 0.0)
    names = list(paired)
    acc = np.array([[base.acc[s] for s in common]] + [[arms[a].acc[s] for s in common] for a in names])
    others = {a: stats.blocked_residual(np.delete(acc, i + 1, axis=0)) for i, a in enumerate(names)} \
        if len(names) > 1 else {}
    return common, others, stats.blocked_residual(acc)


def _compare(arm: _Arm, base: _Arm, pooled: tuple[float, float], others: tuple[float, float] | None,
             k_block: int) -> dict[str, Any]:
    """The primary comparison (blocked, else paired, else Welch; each with the image component), the
    paired robustness check, and what the primary could have detected (`_power` needs plan/n)."""
    shared = sorted(set(arm.acc) & set(base.acc))
    if len(shared) < 2:
        image = None
        mine, theirs = arm.images(sorted(arm.acc)), base.images(sorted(base.acc))
        if mine is not None and theirs is not None:
            image = stats.unpaired_image_component(100.0 * mine, 100.0 * theirs)
        c = stats.welch(list(arm.acc.values()), list(base.acc.values()), image=image)
        n = min(len(arm.acc), len(base.acc))
        plan = stats.Plan(c.var_seed * n, 1.0, *(image if image and math.isfinite(image[0]) else (0.0, math.inf)))
        return {"primary": c, "check": c, "n_pairs": n, "plan": plan, "spread_ratio": math.nan, "heterogeneous": False}
    a, b = np.array([arm.acc[s] for s in shared]), np.array([base.acc[s] for s in shared])
    mine, theirs = arm.images(shared), base.images(shared)
    z = stats.image_differences(mine, theirs) if mine is not None and theirs is not None else None
    blocked = pooled[1] > 0
    v = stats.versus(a, b, pooled if blocked else (math.nan, 0.0), z, others)
    check = stats.comparison(v, "check")
    primary = stats.comparison(v, "primary") if blocked else check
    own = not blocked or primary.test != "blocked"
    unit, per_seed = (check.var_seed * len(shared), 1.0) if own else (2 * pooled[0], k_block - 1.0)
    plan = stats.Plan(unit, per_seed, v.var_img if z is not None else 0.0, v.df_img if z is not None else math.inf)
    if z is None:  # no per-image data: the interval covers seeds only (said in the test column)
        primary = dataclasses.replace(primary, var_img=math.nan)
        check = dataclasses.replace(check, var_img=math.nan)
    return {"primary": primary, "check": check, "n_pairs": len(shared), "plan": plan,
            "spread_ratio": float(v.spread_ratio()), "heterogeneous": bool(v.heterogeneous())}


def _power(c: dict[str, Any], family: int, min_effect: float) -> dict[str, Any]:
    """What the primary test could have detected: MDE at 80% power from its SE and df, at alpha 0.05 and
    at Holm's first step, and the seeds it would need for `min_effect` pp at Holm's first-step alpha
    (the image component does not shrink with seeds: beyond it the target is unreachable)."""
    p: stats.Comparison = c["primary"]
    holm_alpha = stats.holm_first_alpha(stats.ALPHA, max(family, 1))
    plan: stats.Plan = c["plan"]
    se = p.se if math.isfinite(p.df) else math.nan
    return {
        "se": se,
        "mde": stats.mde(se, p.df),
        "mde_holm": stats.mde(se, p.df, holm_alpha),
        "seeds_needed": stats.seeds_needed(plan, min_effect, holm_alpha) if math.isfinite(se) else None,
        "min_effect_reachable": plan.reachable(min_effect, holm_alpha) if math.isfinite(se) else True,
    }


def _seed_tests(arm: _Arm, base: _Arm) -> list[dict[str, Any]]:
    """Per shared seed: do these two trained networks differ on these images (McNemar, image bootstrap)."""
    rows = []
    for s in sorted(set(arm.correct) & set(base.correct)):
        m = stats.mcnemar(arm.correct[s], base.correct[s])
        boot = stats.paired_bootstrap(arm.correct[s], base.correct[s], seed=s)
        rows.append({"seed": s, "diff": boot.diff, "ci_low": boot.ci_low, "ci_high": boot.ci_high,
                     "p_mcnemar": m.p_value, "only_arm": m.c, "only_baseline": m.b,
                     "differ": stats.verdict(m.diff_pp, m.p_value)})
    return rows


def comparisons(collected: Collected) -> dict[str, dict[str, Any]]:
    """arm id -> its comparison with the same backbone's baseline (see `_compare`), plus its per-seed tests."""
    arms = collected.arms
    n_images = dataset_info(collected.study.dataset).test_count
    by_arm = {a: _Arm(_acc_by_seed(g), _correct_by_seed(g, n_images)) for a, g in collected.runs.groupby("arm")}
    out: dict[str, dict[str, Any]] = {}
    for _, group in arms.groupby("backbone", sort=False):
        base_ids = group.loc[group["is_baseline"], "arm"].tolist()
        base = by_arm.get(base_ids[0]) if base_ids else None
        if base is None or not base.acc:
            continue
        mine = {a: by_arm[a] for a in group.loc[~group["is_baseline"], "arm"] if a in by_arm and by_arm[a].acc}
        common, others, pooled = _block(base, mine)
        k_block = 1 + len(others) if others else 2
        for a, x in mine.items():
            out[a] = {**_compare(x, base, pooled, others.get(a), k_block), "seed_tests": _seed_tests(x, base),
                      "block_seeds": common}
    family = sum(math.isfinite(c["primary"].p_value) for c in out.values())  # Holm's family: the testable ones
    for c in out.values():
        c.update(_power(c, family, collected.study.min_effect_pp))
    return out


def _accuracy(runs: pd.DataFrame, n_images: int) -> stats.Summary:
    """Mean accuracy over seeds with a CI carrying the seed and the test-image noise of this arm."""
    acc = [float(a) for a in runs["acc"]]
    correct = _Arm(_acc_by_seed(runs), _correct_by_seed(runs, n_images))
    seeds = sorted(correct.acc)
    images = correct.images(seeds) if seeds else None
    if images is not None and images.shape[1] > 1:
        c = stats.crossed(100.0 * images)
        return stats.summarize(acc, image=(float(c.var_img), float(c.df_img)))
    mean = float(np.mean(acc)) if acc else math.nan
    bound = stats.binomial_sd_pp(mean, n_images) ** 2 if n_images and math.isfinite(mean) else math.nan
    return stats.summarize(acc, image=(bound, math.inf))


def arm_table(collected: Collected, found: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per arm of the study file (missing arms included, with n = 0).

    Accuracy: mean over seeds with a CI from seed and test-image noise. Comparison with the same
    backbone's baseline (`comparisons`): the primary test is blocked over the backbone's arms and
    shared seeds (paired per arm when no block can be formed, Welch without shared seeds), plus the
    image component; Holm across all arms of the study decides the verdict. The per-arm paired test
    is kept as the robustness check (check_* columns, with its own Holm family and verdict).
    """
    arms = collected.arms
    timed = timed_columns(collected.batch_sizes)
    small = min(collected.batch_sizes) if collected.batch_sizes else None
    small_cols = ((Columns.latency(small), *Columns.overhead(Columns.latency_metric(small))) if small is not None
                  else ())  # the latency the summary quotes
    by_arm = {arm: g for arm, g in collected.runs.groupby("arm")}
    baselines = arms.loc[arms["is_baseline"], ["backbone", "arm"]].set_index("backbone")["arm"].to_dict()
    wanted = collected.items.groupby("arm").size()
    done = collected.items[collected.items["status"] == "complete"].groupby("arm").size()
    n_images = dataset_info(collected.study.dataset).test_count
    found = comparisons(collected) if found is None else found
    targets = _targets(collected, baselines)
    empty = collected.runs.iloc[0:0]
    rows: list[dict[str, Any]] = []
    for _, arm in arms.iterrows():
        runs = by_arm.get(arm["arm"], empty)
        acc = _accuracy(runs, n_images)
        c = found.get(arm["arm"])
        n_done, n_wanted = int(done.get(arm["arm"], 0)), int(wanted.get(arm["arm"], 0))
        sources = sorted({str(v) for v in runs["hp_source"].dropna()}) if "hp_source" in runs else []
        rows.append({
            **{k: arm.get(k) for k in FACTOR_COLUMNS},
            "is_baseline": bool(arm["is_baseline"]),
            "status": "complete" if n_done == n_wanted and n_done else ("missing" if n_done == 0 else "partial"),
            "n": acc.n,
            "acc_mean": acc.mean, "acc_std": acc.std, "acc_ci_low": acc.ci_low, "acc_ci_high": acc.ci_high,
            **_comparison_columns(c),
            "hp_source": "; ".join(sources) or "-",
            **_cost_columns(arm, timed, small_cols),
            "train_s_per_epoch": runs["train_s_per_epoch"].mean() if len(runs) else math.nan,
            **_reach(collected, arm["arm"], targets.get(arm["backbone"], math.nan)),
            "peak_mem_train_mib": pd.to_numeric(runs["peak_mem_train_mib"], errors="coerce").mean(),
        })
    return _finish(pd.DataFrame(rows), timed)


def _cost_columns(arm: pd.Series, timed: list[str], small_cols: Sequence[str]) -> dict[str, Any]:
    """An arm's cost columns, from its profile row (empty when its backbone was not profiled)."""
    warnings = arm.get("timing_warnings")
    return {
        "params": arm.get("params"), "attn_params": arm.get("attn_params"),
        "macs_fvcore_default": arm.get("macs_fvcore_default"), "macs_full": arm.get("macs_full"),
        **{col: arm.get(col) for col in timed},
        **{key: arm.get(col) for key, col in zip(SMALL_BATCH, small_cols)},
        "timing_warnings": list(warnings or []) if isinstance(warnings, list) else [],
        "cost_host": arm.get("host"),
    }


COMPARISON_COLUMNS = ("diff", "diff_ci_low", "diff_ci_high", "p", "df", "test", "se", "var_seed", "var_img",
                      "check_ci_low", "check_ci_high", "check_p", "spread_ratio", "heterogeneous", "mde",
                      "mde_holm", "seeds_needed", "min_effect_reachable", "n_pairs", "seeds_better", "seeds_worse")


def _comparison_columns(c: dict[str, Any] | None) -> dict[str, Any]:
    """The arm table's comparison columns; NaN/empty for the baseline and arms that cannot be compared."""
    if c is None:
        return {**{k: math.nan for k in COMPARISON_COLUMNS}, "test": "-", "seeds_needed": None, "seeds_better": "",
                "seeds_worse": "", "heterogeneous": False, "min_effect_reachable": True}
    p, k = c["primary"], c["check"]
    tests = c["seed_tests"]
    return {
        "diff": p.diff, "diff_ci_low": p.ci_low, "diff_ci_high": p.ci_high, "p": p.p_value, "df": p.df,
        "test": p.test + ("" if math.isfinite(p.var_img) else " (seeds only)"),
        "se": c["se"], "var_seed": p.var_seed, "var_img": p.var_img,
        "check_ci_low": k.ci_low, "check_ci_high": k.ci_high, "check_p": k.p_value,
        "spread_ratio": c["spread_ratio"], "heterogeneous": c["heterogeneous"],
        "mde": c["mde"], "mde_holm": c["mde_holm"], "seeds_needed": c["seeds_needed"],
        "min_effect_reachable": c["min_effect_reachable"], "n_pairs": c["n_pairs"],
        "seeds_better": ",".join(str(t["seed"]) for t in tests if t["differ"] == stats.BETTER),
        "seeds_worse": ",".join(str(t["seed"]) for t in tests if t["differ"] == stats.WORSE),
    }


def _targets(collected: Collected, baselines: dict[str, str]) -> dict[str, float]:
    """backbone -> the baseline's mean final validation accuracy: the target "time to" is measured against."""
    out = {}
    for backbone, base in baselines.items():
        curves = collected.curves[collected.curves["arm"] == base]
        last = curves.sort_values("epoch").groupby("seed").tail(1)
        column = "val_acc" if len(last) and last["val_acc"].notna().all() else "eval_acc"
        out[backbone] = float(last[column].mean()) if len(last) else math.nan
    return out


def _reach(collected: Collected, arm: str, target: float) -> dict[str, Any]:
    """Epochs and training seconds to the target per seed, censored medians."""
    curves = collected.curves[collected.curves["arm"] == arm]
    reach = ([_to_target(g.sort_values("epoch"), target) for _, g in curves.groupby("seed")]
             if math.isfinite(target) else [])
    epochs, ep_cens = _censored_median([r[0] for r in reach], [r[3] for r in reach])
    seconds, s_cens = _censored_median([r[1] for r in reach], [r[4] for r in reach])
    return {"target_val_acc": target, "epochs_to_target": epochs, "epochs_to_target_censored": ep_cens,
            "time_to_target_s": seconds, "time_to_target_censored": s_cens,
            "reached_target": f"{sum(not r[2] for r in reach)}/{len(reach)}" if reach else ""}


def _finish(table: pd.DataFrame, timed: list[str]) -> pd.DataFrame:
    """Holm across every comparison of the study (primary and check separately), verdicts, numeric types."""
    table["reduction"] = table["reduction"].astype("Int64")
    table["p_holm"] = stats.holm(table["p"].tolist())
    table["check_p_holm"] = stats.holm(table["check_p"].tolist())
    table["verdict"] = [
        "baseline" if b else ("no results" if n == 0 else stats.verdict(d, p))
        for b, n, d, p in zip(table["is_baseline"], table["n"], table["diff"], table["p_holm"])
    ]
    table["check_verdict"] = [
        "" if b or n == 0 else stats.verdict(d, p)
        for b, n, d, p in zip(table["is_baseline"], table["n"], table["diff"], table["check_p_holm"])
    ]
    numeric = ["params", "macs_fvcore_default", "macs_full", "attn_params", "train_s_per_epoch",
               "time_to_target_s", "peak_mem_train_mib", *timed, *SMALL_BATCH]
    for col in numeric:
        if col not in table:
            table[col] = math.nan
        table[col] = pd.to_numeric(table[col], errors="coerce")
    # static costs relative to the baseline row; measured times carry per-round overheads instead
    return add_baseline_deltas(table, ["params", "macs_fvcore_default", "macs_full"])


def seed_table(found: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per arm x shared seed (from `comparisons`): do these two trained networks differ on these
    test images?"""
    rows = [{"arm": arm, **t} for arm, c in found.items() for t in c["seed_tests"]]
    return pd.DataFrame(rows, columns=["arm", "seed", "diff", "ci_low", "ci_high", "p_mcnemar", "only_arm",
                                       "only_baseline", "differ"])


def swept_factors(table: pd.DataFrame) -> list[str]:
    """Factors that take more than one value among the attention arms (what the study varies)."""
    arms = table[~table["is_baseline"]]
    return [f for f in SWEEPABLE if f in arms and arms[f].dropna().astype(str).nunique() > 1]


def factor_table(table: pd.DataFrame, factor: str) -> pd.DataFrame:
    """Accuracy by one factor's level per backbone and attention type, averaged over the other factors."""
    arms = table[~table["is_baseline"] & table[factor].notna() & (table["n"] > 0)]
    if arms.empty:
        return pd.DataFrame(columns=["backbone", "attention", factor, "arms", "acc_mean", "diff", "best_p_holm"])
    group = ["backbone", "attention"] + ([factor] if factor not in ("backbone",) else [])
    out = arms.groupby(group, dropna=False, sort=True).agg(
        arms=("arm", "count"), acc_mean=("acc_mean", "mean"), diff=("diff", "mean"), best_p_holm=("p_holm", "min"),
    ).reset_index()
    return out


def factor_pivot(long: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The long factor table as rows = backbone/attention, columns = factor levels, cells 'acc (diff)'."""
    if long.empty:
        return long
    cells = long.assign(cell=[
        f"{a:.2f} ({d:+.2f})" if math.isfinite(d) else f"{a:.2f}" for a, d in zip(long["acc_mean"], long["diff"])
    ])
    index = ["backbone", "attention"] if factor != "backbone" else ["attention"]
    column = factor if factor != "backbone" else "backbone"
    pivot = cells.pivot_table(index=index, columns=column, values="cell", aggfunc="first").reset_index()
    pivot.columns = [f"{factor}={c}" if c not in index else str(c) for c in pivot.columns]
    return pivot.fillna("-")


# ---------------------------------------------------------------- display (markdown) views


def fmt(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    """A number for a markdown cell; '-' for missing values."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{x:{spec}}{suffix}" if math.isfinite(x) else "-"


def _with_pct(value: Any, pct: Any, spec: str) -> str:
    text = fmt(value, spec)
    delta = fmt(pct, "+.1f", "%")
    return text if delta == "-" else f"{text} ({delta})"


def _median_iqr(median: Any, iqr: Any) -> str:
    if fmt(median) == "-":
        return "-"
    return f"{fmt(median, '.3g')} ({fmt(iqr, '.2g')})"


def _overhead(r: Any, metric: str) -> str:
    return overhead_text(*(r.get(c) for c in Columns.overhead(metric)))


def _mega(value: Any) -> float:
    try:
        return float(value) / 1e6
    except (TypeError, ValueError):
        return math.nan


def _target_cell(value: Any, censored: Any, bound_spec: str, reached: str) -> str:
    if not reached:
        return "-"
    text = fmt(value, bound_spec)
    return (f">{text}" if censored else text) + f" ({reached} reached)"


def _seeds_needed(r: Any) -> str:
    n = r.get("seeds_needed")
    if n is not None and not (isinstance(n, float) and not math.isfinite(n)):
        return str(int(n))
    if not math.isfinite(r.get("mde", math.nan)):
        return "-"
    return "> 1000" if r.get("min_effect_reachable", True) else "unreachable with this test set"


def _interval(center: Any, low: Any, high: Any) -> str:
    text = fmt(center, "+.2f")
    if text != "-" and math.isfinite(float(low)):
        text += f" [{float(low):+.2f}, {float(high):+.2f}]"
    return text


def _check_cell(r: Any) -> str:
    """The paired robustness check: its CI and Holm p, and a note where it disagrees or the spread differs."""
    blocked = str(r["test"]).startswith(("blocked", "paired ("))  # the check is a separate test only there
    if r["is_baseline"] or not blocked or not math.isfinite(r.get("check_ci_low", math.nan)):
        return "-"
    text = f"{_interval(r['diff'], r['check_ci_low'], r['check_ci_high'])}, p {fmt(r['check_p_holm'], '.3g')}"
    notes = []
    if r.get("check_verdict") and r["check_verdict"] != r["verdict"]:
        notes.append(f"check: {r['check_verdict']}")
    if bool(r.get("heterogeneous")):
        notes.append(f"own spread {fmt(r['spread_ratio'], '.1f')}x the others'")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def summary_view(table: pd.DataFrame, batch_sizes: Sequence[int], min_effect: float = 0.5) -> pd.DataFrame:
    """The headline table: accuracy with its uncertainty (seeds and test images), the primary comparison,
    its robustness check and what it could have detected, and the main costs."""
    small = min(batch_sizes) if batch_sizes else None
    rows = []
    for _, r in table.iterrows():
        mde = "-" if not math.isfinite(r["mde"]) else f"{fmt(r['mde'])} / {fmt(r['mde_holm'])}"
        rows.append({
            "arm": r["arm"],
            "n": int(r["n"]),
            "acc % (mean ± std)": f"{fmt(r['acc_mean'])} ± {fmt(r['acc_std'])}" if r["n"] else "-",
            "95% CI": f"[{fmt(r['acc_ci_low'])}, {fmt(r['acc_ci_high'])}]" if r["n"] > 1 else "-",
            "Δ vs baseline, pp [95% CI]": _interval(r["diff"], r["diff_ci_low"], r["diff_ci_high"]),
            "test": r["test"] if r["test"] not in (None, "-") else "-",
            "p (Holm)": fmt(r["p_holm"], ".3g"),
            "verdict": r["verdict"],
            "paired check [95% CI], p (Holm)": _check_cell(r),
            "MDE pp (α .05 / Holm)": mde,
            f"seeds for {min_effect:g} pp (Holm α)": _seeds_needed(r),
            "MACs full M (Δ%)": _with_pct(_mega(r["macs_full"]), r["macs_full_vs_none_pct"], ".2f"),
            f"latency b{small} overhead [95% CI]": overhead_text(r["latency_overhead_pct"],
                                                                 r["latency_overhead_ci_low_pct"],
                                                                 r["latency_overhead_ci_high_pct"]),
            "train step overhead [95% CI]": _overhead(r, Columns.TRAIN_STEP),
        })
    return pd.DataFrame(rows)


def seed_view(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per seed: arm vs baseline on the shared test images, as "these two trained networks differ"."""
    words = {stats.BETTER: "yes: the arm's network is better", stats.WORSE: "yes: the baseline's network is better",
             stats.SAME: "no detectable difference", stats.UNTESTED: "-"}
    rows = []
    for _, r in seeds.iterrows():
        rows.append({
            "arm": r["arm"],
            "seed": int(r["seed"]),
            "Δ pp on these images [95% image-bootstrap CI]": _interval(r["diff"], r["ci_low"], r["ci_high"]),
            "McNemar p": fmt(r["p_mcnemar"], ".3g"),
            "images only the arm / only the baseline gets right": f"{int(r['only_arm'])}/{int(r['only_baseline'])}",
            "these two networks differ (p < 0.05, unadjusted)": words.get(r["differ"], str(r["differ"])),
        })
    return pd.DataFrame(rows)


def provenance_view(table: pd.DataFrame) -> pd.DataFrame:
    """Where each arm's hyperparameters came from, and how fast it reached the baseline's validation accuracy."""
    rows = []
    for _, r in table.iterrows():
        rows.append({
            "arm": r["arm"],
            "hyperparameters from": r["hp_source"],
            "epochs to baseline val acc": _target_cell(r["epochs_to_target"], r["epochs_to_target_censored"], ".0f",
                                                       r["reached_target"]),
            "train s to baseline val acc": _target_cell(r["time_to_target_s"], r["time_to_target_censored"], ".1f",
                                                        r["reached_target"]),
        })
    return pd.DataFrame(rows)


def cost_view(table: pd.DataFrame, batch_sizes: Sequence[int]) -> pd.DataFrame:
    """Every cost column: static costs with % over the baseline, both MAC policies side by side, and
    per batch size the latency (median over interleaved rounds, IQR over rounds) with its overhead
    and 95% CI; the training step the same way; the final runs' wall-clock per epoch, labelled so."""
    large = max(batch_sizes) if batch_sizes else None
    rows = []
    for _, r in table.iterrows():
        row = {
            "arm": r["arm"],
            "hidden": r["hidden"] if isinstance(r["hidden"], str) else "-",
            "params (Δ%)": _with_pct(r["params"], r["params_vs_none_pct"], ",.0f"),
            "attn params": fmt(r["attn_params"], ",.0f"),
            "MACs fvcore M (Δ%)": _with_pct(_mega(r["macs_fvcore_default"]), r["macs_fvcore_default_vs_none_pct"],
                                            ".3f"),
            "MACs full M (Δ%)": _with_pct(_mega(r["macs_full"]), r["macs_full_vs_none_pct"], ".3f"),
        }
        for b in batch_sizes:
            row[f"latency b{b} ms (IQR)"] = _median_iqr(r[Columns.latency(b)], r[Columns.latency_iqr(b)])
            row[f"b{b} overhead [95% CI]"] = _overhead(r, Columns.latency_metric(b))
        if large is not None:
            row[f"throughput b{large} img/s"] = fmt(r[Columns.throughput(large)], ".0f")
        row["train step ms (IQR)"] = _median_iqr(r[Columns.TRAIN_STEP_MS], r[Columns.TRAIN_STEP_IQR])
        row["train step overhead [95% CI]"] = _overhead(r, Columns.TRAIN_STEP)
        row["wall-clock s/epoch"] = fmt(r["train_s_per_epoch"], ".3g")
        row["peak train MiB"] = fmt(r["peak_mem_train_mib"], ".0f")
        if large is not None:
            row[f"peak infer b{large} MiB"] = fmt(r[Columns.peak_mem(large)], ".0f")
        rows.append(row)
    return pd.DataFrame(rows)
