"""The report's tables: one row per arm aggregated over seeds, and one table per swept factor.

Accuracy is summarised over seeds (mean, std, t-based 95% CI) and compared with the baseline of the
same backbone (Welch's test, Holm-corrected across every arm of the study). Costs are shown as
absolute values and as % over that baseline, for both MAC counting policies and for measured time,
because FLOPs hide latency. Training time at equal accuracy (seed 000's concern) is the training
time an arm needed to first reach its baseline's mean final accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import stats
from ..measure import add_baseline_deltas
from .collect import Collected

FACTOR_COLUMNS = ("arm", "backbone", "attention", "position", "reduction", "hidden", "stages", "knobs")
SWEEPABLE = ("backbone", "position", "reduction", "stages", "knobs")


def latency_columns(batch_sizes: Sequence[int]) -> dict[str, str]:
    """Cost column names for the smallest (latency) and largest (throughput) measured batch."""
    if not batch_sizes:
        return {}
    small, large = min(batch_sizes), max(batch_sizes)
    return {
        "latency": f"latency_b{small}_ms_median",
        "latency_iqr": f"latency_b{small}_ms_iqr",
        "latency_large": f"latency_b{large}_ms_median",
        "latency_large_iqr": f"latency_b{large}_ms_iqr",
        "throughput": f"throughput_b{large}_img_s",
        "peak_mem": f"peak_mem_b{large}_mib",
    }


def time_to_accuracy(curves: pd.DataFrame, target: float) -> float:
    """Training seconds (evaluation excluded) until one run's accuracy first reached `target`; NaN if never."""
    if not math.isfinite(target):
        return math.nan
    elapsed = 0.0
    for acc, seconds in zip(curves["eval_acc"], curves["train_time_s"]):
        elapsed += float(seconds or 0.0)
        if acc is not None and acc >= target:
            return elapsed
    return math.nan


def arm_table(c: Collected) -> pd.DataFrame:
    """One row per arm of the study file (missing arms included, with n = 0)."""
    arms = c.arms.copy()
    cols = latency_columns(c.batch_sizes)
    by_arm = {arm: g for arm, g in c.runs.groupby("arm")}
    baselines = arms.loc[arms["is_baseline"], ["backbone", "arm"]].set_index("backbone")["arm"].to_dict()
    seeds_wanted = len(c.study.seeds)
    done = c.items[c.items["status"] == "complete"].groupby("arm").size()

    base_mean = {}
    for backbone, base in baselines.items():
        runs = by_arm.get(base)
        base_mean[backbone] = stats.summarize(runs["acc"].tolist()).mean if runs is not None else math.nan

    rows: list[dict[str, Any]] = []
    for _, arm in arms.iterrows():
        runs = by_arm.get(arm["arm"], c.runs.iloc[0:0])
        acc = stats.summarize(runs["acc"].tolist())
        base_runs = by_arm.get(baselines.get(arm["backbone"], ""), c.runs.iloc[0:0])
        cmp = (stats.welch(runs["acc"].tolist(), base_runs["acc"].tolist())
               if not arm["is_baseline"] else stats.Comparison(*(math.nan,) * 5))
        target = base_mean.get(arm["backbone"], math.nan)
        reach = [time_to_accuracy(g.sort_values("epoch"), target)
                 for _, g in c.curves[c.curves["arm"] == arm["arm"]].groupby("seed")]
        reached = [t for t in reach if math.isfinite(t)]
        n_done = int(done.get(arm["arm"], 0))
        rows.append({
            **{k: arm.get(k) for k in FACTOR_COLUMNS},
            "is_baseline": bool(arm["is_baseline"]),
            "status": "complete" if n_done == seeds_wanted else ("missing" if n_done == 0 else "partial"),
            "n": acc.n,
            "acc_mean": acc.mean, "acc_std": acc.std, "acc_ci_low": acc.ci_low, "acc_ci_high": acc.ci_high,
            "diff": cmp.diff, "diff_ci_low": cmp.ci_low, "diff_ci_high": cmp.ci_high, "p": cmp.p_value,
            "params": arm.get("params"), "attn_params": arm.get("attn_params"),
            "macs_fvcore_default": arm.get("macs_fvcore_default"), "macs_full": arm.get("macs_full"),
            **{key: arm.get(col) for key, col in cols.items()},
            "train_s_per_epoch": runs["train_s_per_epoch"].mean() if len(runs) else math.nan,
            "time_to_baseline_acc_s": float(np.median(reached)) if reached else math.nan,
            "reached_baseline_acc": f"{len(reached)}/{len(reach)}" if reach else "",
            "peak_mem_train_mib": pd.to_numeric(runs["peak_mem_train_mib"], errors="coerce").mean(),
        })
    table = pd.DataFrame(rows)
    table["reduction"] = table["reduction"].astype("Int64")
    table["p_holm"] = stats.holm(table["p"].tolist())
    table["verdict"] = [
        "baseline" if b else ("no results" if n == 0 else stats.verdict(d, p))
        for b, n, d, p in zip(table["is_baseline"], table["n"], table["diff"], table["p_holm"])
    ]
    numeric = ["params", "macs_fvcore_default", "macs_full", "latency", "latency_large", "throughput",
               "train_s_per_epoch", "time_to_baseline_acc_s", "peak_mem_train_mib"]
    for col in numeric + ["latency_iqr", "latency_large_iqr", "peak_mem", "attn_params"]:
        if col not in table:
            table[col] = math.nan
        table[col] = pd.to_numeric(table[col], errors="coerce")
    relative = [c for c in numeric if c != "peak_mem_train_mib"]
    table = add_baseline_deltas(table, relative)
    for col in relative:  # a grid without a 'none' arm has no baseline: the % columns exist, empty
        if f"{col}_vs_none_pct" not in table:
            table[f"{col}_vs_none_pct"] = math.nan
    return table


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


def _median_iqr(median: Any, iqr: Any, pct: Any) -> str:
    if fmt(median) == "-":
        return "-"
    delta = fmt(pct, "+.1f", "%")
    return f"{fmt(median, '.3g')} ± {fmt(iqr, '.2g')}" + ("" if delta == "-" else f" ({delta})")


def _mega(value: Any) -> float:
    try:
        return float(value) / 1e6
    except (TypeError, ValueError):
        return math.nan


def summary_view(table: pd.DataFrame, batch_sizes: Sequence[int]) -> pd.DataFrame:
    """The headline table: accuracy with its uncertainty and verdict, and the main costs."""
    small, large = (min(batch_sizes), max(batch_sizes)) if batch_sizes else (None, None)
    rows = []
    for _, r in table.iterrows():
        diff = fmt(r["diff"], "+.2f")
        if diff != "-" and math.isfinite(r["diff_ci_low"]):
            diff += f" [{r['diff_ci_low']:+.2f}, {r['diff_ci_high']:+.2f}]"
        rows.append({
            "arm": r["arm"],
            "n": int(r["n"]),
            "acc % (mean ± std)": f"{fmt(r['acc_mean'])} ± {fmt(r['acc_std'])}" if r["n"] else "-",
            "95% CI": f"[{fmt(r['acc_ci_low'])}, {fmt(r['acc_ci_high'])}]" if r["n"] > 1 else "-",
            "Δ vs baseline, pp [95% CI]": diff,
            "p (Holm)": fmt(r["p_holm"], ".3g"),
            "verdict": r["verdict"],
            "params M (Δ%)": _with_pct(_mega(r["params"]), r["params_vs_none_pct"], ".3f"),
            "MACs full M (Δ%)": _with_pct(_mega(r["macs_full"]), r["macs_full_vs_none_pct"], ".2f"),
            f"latency b{small} ms (Δ%)": _with_pct(r["latency"], r["latency_vs_none_pct"], ".3g"),
            f"throughput b{large} img/s (Δ%)": _with_pct(r["throughput"], r["throughput_vs_none_pct"], ".0f"),
            "train s to baseline acc": fmt(r["time_to_baseline_acc_s"], ".2f")
            + (f" ({r['reached_baseline_acc']})" if r["reached_baseline_acc"] else ""),
        })
    return pd.DataFrame(rows)


def cost_view(table: pd.DataFrame, batch_sizes: Sequence[int]) -> pd.DataFrame:
    """Every cost column, absolute and relative to the baseline, both MAC policies side by side."""
    small, large = (min(batch_sizes), max(batch_sizes)) if batch_sizes else (None, None)
    rows = []
    for _, r in table.iterrows():
        rows.append({
            "arm": r["arm"],
            "hidden": r["hidden"] if isinstance(r["hidden"], str) else "-",
            "params (Δ%)": _with_pct(r["params"], r["params_vs_none_pct"], ",.0f"),
            "attn params": fmt(r["attn_params"], ",.0f"),
            "MACs fvcore M (Δ%)": _with_pct(_mega(r["macs_fvcore_default"]), r["macs_fvcore_default_vs_none_pct"],
                                            ".3f"),
            "MACs full M (Δ%)": _with_pct(_mega(r["macs_full"]), r["macs_full_vs_none_pct"], ".3f"),
            f"latency b{small} ms, median ± IQR (Δ%)": _median_iqr(r["latency"], r["latency_iqr"],
                                                                   r["latency_vs_none_pct"]),
            f"latency b{large} ms, median ± IQR (Δ%)": _median_iqr(r["latency_large"], r["latency_large_iqr"],
                                                                   r["latency_large_vs_none_pct"]),
            f"throughput b{large} img/s (Δ%)": _with_pct(r["throughput"], r["throughput_vs_none_pct"], ".0f"),
            "train s/epoch (Δ%)": _with_pct(r["train_s_per_epoch"], r["train_s_per_epoch_vs_none_pct"], ".3g"),
            "peak train MiB": fmt(r["peak_mem_train_mib"], ".0f"),
            f"peak infer b{large} MiB": fmt(r.get("peak_mem"), ".0f"),
        })
    return pd.DataFrame(rows)
