"""The report's tables: one row per arm aggregated over seeds, and one table per swept factor.

Accuracy is summarised over seeds (mean, std, t-based 95% CI floored by the test set's binomial
noise) and compared with the baseline of the same backbone by a paired t-test over seeds (Welch
where seeds are not shared), Holm-corrected across every arm of the study, with the minimum
detectable effect beside it; a second view compares the shared test images (McNemar, paired
bootstrap). Static costs are shown as % over that baseline; measured times as the overheads of
interleaved timing with their CIs (ablate.timing), because FLOPs hide latency. Time to the
baseline's accuracy is read off the validation curve, censored runs kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import stats
from ..columns import Columns, add_baseline_deltas, overhead_text
from ..data import dataset_info
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


def _paired_arrays(runs: pd.DataFrame, base_runs: pd.DataFrame, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness of arm and baseline on the shared test set, pooled over the seeds both have."""
    mine = {int(s): v for s, v in zip(runs["seed"], runs["test_correct"]) if isinstance(v, str)}
    theirs = {int(s): v for s, v in zip(base_runs["seed"], base_runs["test_correct"]) if isinstance(v, str)}
    seeds = sorted(set(mine) & set(theirs))
    if not seeds or n_images < 1:
        return np.zeros(0, bool), np.zeros(0, bool)
    return (np.concatenate([decode_correct(mine[s], n_images) for s in seeds]),
            np.concatenate([decode_correct(theirs[s], n_images) for s in seeds]))


def _power(runs: pd.DataFrame, base_runs: pd.DataFrame, cmp: stats.Comparison, acc: float, n_images: int,
           family: int, min_effect: float) -> dict[str, Any]:
    """What the comparison could have detected: MDE at 80% power (alpha 0.05 and Holm's first step),
    and the seeds needed for `min_effect` pp, from the observed spread floored by test-set noise."""
    floor = stats.binomial_sd_pp(acc, n_images) if n_images and math.isfinite(acc) else math.nan
    if cmp.test == "paired":
        shared = sorted(set(runs["seed"]) & set(base_runs["seed"]))
        a, b = runs.set_index("seed")["acc"], base_runs.set_index("seed")["acc"]
        diffs = [float(a[s] - b[s]) for s in shared]
        n, sd, paired = len(diffs), float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan, True
    else:
        n = min(len(runs), len(base_runs))
        sds = [float(np.std(x, ddof=1)) for x in (runs["acc"], base_runs["acc"]) if len(x) > 1]
        sd, paired = (float(np.sqrt(np.mean(np.square(sds)))) if sds else math.nan), False
    used = sd if math.isfinite(sd) and sd > 0 else floor  # zero spread is floored by the test set's own noise
    if not math.isfinite(used) or n < 2:
        return {"mde": math.nan, "mde_holm": math.nan, "seeds_needed": None, "sd_used": used, "sd_floored": False}
    return {
        "mde": stats.mde(used, n, 0.05, paired=paired),
        "mde_holm": stats.mde(used, n, stats.holm_first_alpha(0.05, max(family, 1)), paired=paired),
        "seeds_needed": stats.seeds_needed(used, min_effect, 0.05, paired=paired),
        "sd_used": used,
        "sd_floored": used != sd,
    }


def arm_table(collected: Collected) -> pd.DataFrame:
    """One row per arm of the study file (missing arms included, with n = 0).

    The primary test is paired over seeds (every arm of a backbone sees the same data order,
    augmentation and initial shared weights at one seed), Welch when fewer than two seeds are
    shared; Holm across all arms. A second view pools the shared test set's images over seeds:
    McNemar's exact test and a paired bootstrap over images.
    """
    arms = collected.arms.copy()
    timed = timed_columns(collected.batch_sizes)
    small = min(collected.batch_sizes) if collected.batch_sizes else None
    small_cols = ((Columns.latency(small), *Columns.overhead(Columns.latency_metric(small))) if small is not None
                  else ())
    by_arm = {arm: g for arm, g in collected.runs.groupby("arm")}
    baselines = arms.loc[arms["is_baseline"], ["backbone", "arm"]].set_index("backbone")["arm"].to_dict()
    wanted = collected.items.groupby("arm").size()
    done = collected.items[collected.items["status"] == "complete"].groupby("arm").size()
    n_images = dataset_info(collected.study.dataset).test_count
    family = int((~arms["is_baseline"]).sum())
    empty = collected.runs.iloc[0:0]

    base_target = {}  # the baseline's mean final validation accuracy: the target "time to" is measured against
    for backbone, base in baselines.items():
        curves = collected.curves[collected.curves["arm"] == base]
        last = curves.sort_values("epoch").groupby("seed").tail(1)
        column = "val_acc" if len(last) and last["val_acc"].notna().all() else "eval_acc"
        base_target[backbone] = float(last[column].mean()) if len(last) else math.nan

    rows: list[dict[str, Any]] = []
    for _, arm in arms.iterrows():
        runs = by_arm.get(arm["arm"], empty)
        base_runs = by_arm.get(baselines.get(arm["backbone"], ""), empty)
        acc0 = stats.summarize(runs["acc"].tolist())
        floor = stats.binomial_sd_pp(acc0.mean, n_images) if math.isfinite(acc0.mean) else None
        acc = stats.summarize(runs["acc"].tolist(), floor_sd=floor)
        row: dict[str, Any] = {}
        if arm["is_baseline"] or base_runs.empty or runs.empty:
            cmp = stats.Comparison(*(math.nan,) * 5, test="-")
        else:
            cmp = stats.compare(dict(zip(runs["seed"], runs["acc"])), dict(zip(base_runs["seed"], base_runs["acc"])))
            row.update(_power(runs, base_runs, cmp, acc.mean, n_images, family, collected.study.min_effect_pp))
            a, b = _paired_arrays(runs, base_runs, n_images)
            if len(a):
                m, boot = stats.mcnemar(a, b), stats.paired_bootstrap(a, b)
                row.update({"img_diff": boot.diff, "img_ci_low": boot.ci_low, "img_ci_high": boot.ci_high,
                            "img_p_mcnemar": m.p_value, "img_discordant": f"{m.c}/{m.b}"})
        target = base_target.get(arm["backbone"], math.nan)
        curves = collected.curves[collected.curves["arm"] == arm["arm"]]
        reach = ([_to_target(g.sort_values("epoch"), target) for _, g in curves.groupby("seed")]
                 if math.isfinite(target) else [])
        epochs, ep_cens = _censored_median([r[0] for r in reach], [r[3] for r in reach])
        seconds, s_cens = _censored_median([r[1] for r in reach], [r[4] for r in reach])
        n_done, n_wanted = int(done.get(arm["arm"], 0)), int(wanted.get(arm["arm"], 0))
        sources = sorted({str(v) for v in runs["hp_source"].dropna()}) if "hp_source" in runs else []
        rows.append({
            **{k: arm.get(k) for k in FACTOR_COLUMNS},
            "is_baseline": bool(arm["is_baseline"]),
            "status": "complete" if n_done == n_wanted and n_done else ("missing" if n_done == 0 else "partial"),
            "n": acc.n,
            "acc_mean": acc.mean, "acc_std": acc0.std, "acc_ci_low": acc.ci_low, "acc_ci_high": acc.ci_high,
            "diff": cmp.diff, "diff_ci_low": cmp.ci_low, "diff_ci_high": cmp.ci_high, "p": cmp.p_value,
            "test": cmp.test,
            **{k: row.get(k, math.nan) for k in ("mde", "mde_holm", "sd_used", "img_diff", "img_ci_low",
                                                  "img_ci_high", "img_p_mcnemar")},
            "seeds_needed": row.get("seeds_needed"), "sd_floored": row.get("sd_floored", False),
            "img_discordant": row.get("img_discordant", ""),
            "hp_source": "; ".join(sources) or "-",
            "params": arm.get("params"), "attn_params": arm.get("attn_params"),
            "macs_fvcore_default": arm.get("macs_fvcore_default"), "macs_full": arm.get("macs_full"),
            **{col: arm.get(col) for col in timed},
            **{key: arm.get(col) for key, col in zip(SMALL_BATCH, small_cols)},  # the latency the summary quotes
            "timing_warnings": list(arm.get("timing_warnings") or []) if isinstance(arm.get("timing_warnings"),
                                                                                   list) else [],
            "cost_host": arm.get("host"),
            "train_s_per_epoch": runs["train_s_per_epoch"].mean() if len(runs) else math.nan,
            "target_val_acc": target,
            "epochs_to_target": epochs, "epochs_to_target_censored": ep_cens,
            "time_to_target_s": seconds, "time_to_target_censored": s_cens,
            "reached_target": f"{sum(not r[2] for r in reach)}/{len(reach)}" if reach else "",
            "peak_mem_train_mib": pd.to_numeric(runs["peak_mem_train_mib"], errors="coerce").mean(),
        })
    table = pd.DataFrame(rows)
    table["reduction"] = table["reduction"].astype("Int64")
    table["p_holm"] = stats.holm(table["p"].tolist())
    table["verdict"] = [
        "baseline" if b else ("no results" if n == 0 else stats.verdict(d, p))
        for b, n, d, p in zip(table["is_baseline"], table["n"], table["diff"], table["p_holm"])
    ]
    numeric = ["params", "macs_fvcore_default", "macs_full", "attn_params", "train_s_per_epoch",
               "time_to_target_s", "peak_mem_train_mib", *timed, *SMALL_BATCH]
    for col in numeric:
        if col not in table:
            table[col] = math.nan
        table[col] = pd.to_numeric(table[col], errors="coerce")
    # static costs relative to the baseline row; measured times carry per-round overheads instead
    return add_baseline_deltas(table, ["params", "macs_fvcore_default", "macs_full"])


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
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "-" if not math.isfinite(r.get("mde", math.nan)) else "> 1000"
    return str(int(n))


def summary_view(table: pd.DataFrame, batch_sizes: Sequence[int], min_effect: float = 0.5) -> pd.DataFrame:
    """The headline table: accuracy with its uncertainty, the paired comparison and what it could have
    detected, and the main costs."""
    small = min(batch_sizes) if batch_sizes else None
    rows = []
    for _, r in table.iterrows():
        diff = fmt(r["diff"], "+.2f")
        if diff != "-" and math.isfinite(r["diff_ci_low"]):
            diff += f" [{r['diff_ci_low']:+.2f}, {r['diff_ci_high']:+.2f}]"
        mde = "-" if not math.isfinite(r["mde"]) else f"{fmt(r['mde'])} / {fmt(r['mde_holm'])}"
        rows.append({
            "arm": r["arm"],
            "n": int(r["n"]),
            "acc % (mean ± std)": f"{fmt(r['acc_mean'])} ± {fmt(r['acc_std'])}" if r["n"] else "-",
            "95% CI": f"[{fmt(r['acc_ci_low'])}, {fmt(r['acc_ci_high'])}]" if r["n"] > 1 else "-",
            "Δ vs baseline, pp [95% CI]": diff,
            "test": r["test"] if r["test"] not in (None, "-") else "-",
            "p (Holm)": fmt(r["p_holm"], ".3g"),
            "verdict": r["verdict"],
            "MDE pp (α .05 / Holm)": mde,
            f"seeds for {min_effect:g} pp": _seeds_needed(r),
            "MACs full M (Δ%)": _with_pct(_mega(r["macs_full"]), r["macs_full_vs_none_pct"], ".2f"),
            f"latency b{small} overhead [95% CI]": overhead_text(r["latency_overhead_pct"],
                                                                 r["latency_overhead_ci_low_pct"],
                                                                 r["latency_overhead_ci_high_pct"]),
            "train step overhead [95% CI]": _overhead(r, Columns.TRAIN_STEP),
        })
    return pd.DataFrame(rows)


def image_view(table: pd.DataFrame) -> pd.DataFrame:
    """The second view: arm vs baseline on the shared test images, pooled over the seeds both have."""
    rows = []
    for _, r in table[~table["is_baseline"] & table["img_diff"].notna()].iterrows():
        rows.append({
            "arm": r["arm"],
            "Δ pp, pooled images [95% bootstrap CI]": f"{r['img_diff']:+.2f} [{r['img_ci_low']:+.2f}, "
                                                      f"{r['img_ci_high']:+.2f}]",
            "McNemar p": fmt(r["img_p_mcnemar"], ".3g"),
            "images only the arm / only the baseline gets right": r["img_discordant"],
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
