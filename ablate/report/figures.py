"""The report's charts (seaborn / matplotlib, PNG), each readable on its own: units on every axis.

Each function takes the frames from `collect`/`tables`, writes zero or more PNGs under
`<report>/figures/`, and returns their `Figure` records (an empty list when the study has nothing
to show yet, e.g. a single reduction ratio or no finished trials). Colours are fixed per attention
type across all charts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from .. import stats
from ..attention import ATTENTION
from ..columns import Columns
from .collect import Collected
from .output import Figure, save_figure, slug

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def theme() -> None:
    """The report's look; write_report applies it inside matplotlib.rc_context, so callers keep theirs."""
    sns.set_theme(style="whitegrid", context="notebook")


def attention_colors() -> dict[str, tuple[float, float, float]]:
    """One fixed colour per attention type (registry order), 'none' in black."""
    names = [n for n in ATTENTION if n != "none"]
    colors = dict(zip(names, sns.color_palette("tab10", len(names))))
    colors["none"] = (0.0, 0.0, 0.0)
    return colors


def short(arm: str, backbone: str) -> str:
    """Arm id without its backbone prefix, for legends inside a per-backbone chart."""
    return arm[len(backbone) + 1:] if arm.startswith(backbone + "/") else arm


def _accuracy_axis(ax: plt.Axes, axis: str = "y") -> None:
    """Accuracy lives in [0, 100]: t-based CIs of a few seeds can reach past it; do not draw that."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    limits = (max(lo, 0.0), min(hi, 101.0))
    ax.set_ylim(*limits) if axis == "y" else ax.set_xlim(*limits)


def _half_ci(row: pd.Series) -> float:
    h = (row["acc_ci_high"] - row["acc_ci_low"]) / 2
    return float(h) if math.isfinite(h) else 0.0


def done_arms(table: pd.DataFrame) -> pd.DataFrame:
    """The arms with at least one complete run."""
    return table[table["n"] > 0]


def _backbones(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["backbone"]))


def _subplots(n: int, width: float = 6.5, height: float = 4.5,
              ncols: int | None = None) -> tuple[plt.Figure, list[plt.Axes]]:
    """n panels of width x height inches in rows of ncols (default: one row); spare panels hidden."""
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


# ---------------------------------------------------------------- accuracy vs cost, Pareto front


def accuracy_vs_cost(table: pd.DataFrame, out: Path, x: str, x_label: str, name: str, what: str,
                     scale: float = 1.0) -> list[Figure]:
    """One point per arm (mean accuracy, 95% CI bars) against a cost / scale; the Pareto front as a step line."""
    done = done_arms(table)
    done = done[pd.to_numeric(done[x], errors="coerce").notna()]
    if done.empty:
        return []
    done = done.assign(**{x: pd.to_numeric(done[x]) / scale})
    colors = attention_colors()
    positions = list(dict.fromkeys(done["position"].dropna()))
    marker = {p: MARKERS[i % len(MARKERS)] for i, p in enumerate(positions)}
    backbones = _backbones(done)
    fig, axes = _subplots(len(backbones))
    for ax, backbone in zip(axes, backbones):
        sub = done[done["backbone"] == backbone].copy()
        sub[x] = sub[x].astype(float)
        for _, r in sub.iterrows():
            ax.errorbar(r[x], r["acc_mean"], yerr=_half_ci(r), fmt=marker.get(r["position"], "o"), ms=7,
                        color=colors.get(r["attention"], "grey"), ecolor=colors.get(r["attention"], "grey"),
                        capsize=3, alpha=0.9, mec="black" if r["is_baseline"] else None)
        front = sub[stats.pareto_front(sub[x].tolist(), sub["acc_mean"].tolist())].sort_values(x)
        ax.plot(front[x], front["acc_mean"], drawstyle="steps-post", color="0.35", lw=1.2, ls="--", zorder=0)
        for _, r in front.iterrows():
            ax.annotate(short(r["arm"], backbone), (r[x], r["acc_mean"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        if sub[x].max() > 20 * max(sub[x].min(), 1e-12):
            ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel("test accuracy (%), mean ± 95% CI")
        ax.set_title(backbone)
        _accuracy_axis(ax)
    handles = [Line2D([], [], color=colors[a], marker="o", ls="", label=a) for a in dict.fromkeys(done["attention"])]
    handles += [Line2D([], [], color="grey", marker=marker[p], ls="", label=f"position {p}") for p in positions]
    handles.append(Line2D([], [], color="0.35", ls="--", label="Pareto front"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"Accuracy vs {what}")
    fig.tight_layout()
    return [save_figure(fig, out, name, f"Accuracy vs {what}",
                        f"One point per arm: mean test accuracy over seeds with its 95% CI; x = {x_label}. "
                        "The dashed step line is the Pareto front (no other arm is both cheaper and more "
                        "accurate); front arms are labelled.")]


# ---------------------------------------------------------------- effect of each arm


def forest(table: pd.DataFrame, out: Path) -> list[Figure]:
    """Difference from the baseline with its 95% CI, one row per arm, coloured by verdict."""
    arms = done_arms(table[~table["is_baseline"]]).dropna(subset=["diff"])
    if arms.empty:
        return []
    arms = arms.sort_values(["backbone", "diff"])
    colors = {stats.BETTER: "tab:green", stats.WORSE: "tab:red", stats.SAME: "0.4", stats.UNTESTED: "0.7"}
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.32 * len(arms)))
    y = np.arange(len(arms))
    for i, (_, r) in enumerate(arms.iterrows()):
        lo, hi = r["diff_ci_low"], r["diff_ci_high"]
        err = [[r["diff"] - lo], [hi - r["diff"]]] if math.isfinite(lo) else None
        ax.errorbar(r["diff"], i, xerr=err, fmt="o", color=colors.get(r["verdict"], "0.4"), capsize=3)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, list(arms["arm"]), fontsize=8)
    ax.set_xlabel("test accuracy − baseline (percentage points), 95% CI (paired t over seeds, else Welch)")
    ax.set_title("Effect of each arm vs its baseline")
    ax.legend(handles=[Line2D([], [], color=c, marker="o", ls="", label=v) for v, c in colors.items()],
              loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return [save_figure(fig, out, "effect_vs_baseline", "Effect vs baseline",
                        "Difference in mean test accuracy from the same backbone's baseline, with the 95% CI of the "
                        "test in the results table (paired over seeds; Welch where seeds are not shared); "
                        "colour = verdict after Holm correction across all arms.")]


def diff_heatmap(table: pd.DataFrame, out: Path) -> list[Figure]:
    """Accuracy difference vs baseline: attention type x position, faceted by backbone and ratio."""
    arms = done_arms(table[~table["is_baseline"]]).dropna(subset=["diff"])
    if arms.empty:
        return []
    arms = arms.assign(position=arms["position"].fillna("-"))
    ratios = sorted({int(r) for r in arms["reduction"].dropna()})
    facets = [(b, r) for b in _backbones(arms) for r in (ratios or [None])]
    vmax = max(float(arms["diff"].abs().max()), 1e-6)
    ncols = max(1, len(ratios))
    fig, axes = _subplots(len(facets), width=max(4.5, 2.8 + 1.3 * arms["position"].nunique()),
                          height=1.6 + 0.55 * arms["attention"].nunique(), ncols=ncols)
    for ax, (backbone, ratio) in zip(axes, facets):
        sub = arms[(arms["backbone"] == backbone)
                   & (arms["reduction"].isna() | (arms["reduction"] == ratio) if ratio is not None else True)]
        grid = sub.groupby(["attention", "position"])["diff"].mean().unstack()
        # a star claims the cell's mean: only when every arm averaged into it is significant, in the same direction
        signs = sub.assign(s=np.where(sub["p_holm"] < stats.ALPHA, np.sign(sub["diff"]), 0.0))
        signif = signs.groupby(["attention", "position"])["s"].agg(lambda v: bool(len(v)) and abs(v.sum()) == len(v)
                                                                   ).unstack()
        labels = grid.map(lambda v: "" if not math.isfinite(v) else f"{v:+.2f}")
        labels = labels + signif.reindex_like(grid).map(lambda s: "*" if isinstance(s, (bool, np.bool_)) and s else "")
        with warnings.catch_warnings():  # seaborn 0.13 calls a colormap method matplotlib 3.11 deprecates
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            sns.heatmap(grid, ax=ax, annot=labels, fmt="", cmap="RdBu", center=0, vmin=-vmax, vmax=vmax,
                        cbar_kws={"label": "Δ accuracy vs baseline (pp)"}, linewidths=0.5)
        ax.set_title(f"{backbone}" + (f", reduction r={ratio}" if ratio else ""), fontsize=10)
        ax.set_xlabel("position")
        ax.set_ylabel("attention type")
    fig.tight_layout()
    return [save_figure(fig, out, "accuracy_diff_heatmap", "Accuracy difference heatmap",
                        "Mean test-accuracy difference from the baseline (percentage points) by attention type and "
                        "position, one panel per backbone and reduction ratio (types without a ratio appear in every "
                        "panel; other factors averaged). * = every arm averaged into the cell is significant after "
                        "Holm correction (alpha 0.05), in the same direction.")]


def accuracy_vs_reduction(table: pd.DataFrame, out: Path) -> list[Figure]:
    """Accuracy against reduction ratio per attention type (and position), baseline as a band."""
    arms = done_arms(table[~table["is_baseline"] & table["reduction"].notna()])
    if arms.empty or arms["reduction"].nunique() < 2:
        return []
    colors = attention_colors()
    backbones = _backbones(arms)
    fig, axes = _subplots(len(backbones))
    styles = ["-", "--", ":", "-."]
    for ax, backbone in zip(axes, backbones):
        sub = arms[arms["backbone"] == backbone]
        pos_style = {p: styles[i % len(styles)] for i, p in enumerate(dict.fromkeys(sub["position"].fillna("-")))}
        for (attention, position), g in sub.groupby(["attention", sub["position"].fillna("-")]):
            # one arm per ratio: its own CI; several (other factors vary): their mean, no band (an average of
            # CI bounds is not a CI)
            g = g.groupby("reduction").agg(acc=("acc_mean", "mean"), lo=("acc_ci_low", "first"),
                                           hi=("acc_ci_high", "first"), k=("arm", "count")
                                           ).reset_index().sort_values("reduction")
            err = ((g["hi"] - g["lo"]) / 2).where(g["k"] == 1).fillna(0)
            ax.errorbar(g["reduction"].astype(float), g["acc"], yerr=err, capsize=3, marker="o",
                        ls=pos_style[position], color=colors.get(attention, "grey"), label=f"{attention} @ {position}")
        base = table[table["is_baseline"] & (table["backbone"] == backbone) & (table["n"] > 0)]
        if not base.empty:
            b = base.iloc[0]
            ax.axhline(b["acc_mean"], color="black", lw=1, label="baseline (mean, 95% CI)")
            if math.isfinite(b["acc_ci_low"]):
                ax.axhspan(b["acc_ci_low"], b["acc_ci_high"], color="black", alpha=0.08)
        levels = sorted({int(r) for r in sub["reduction"]})
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(r) for r in levels])
        ax.minorticks_off()
        ax.set_xlabel("reduction ratio r (hidden width = max(C // r, 1))")
        ax.set_ylabel("test accuracy (%), mean ± 95% CI")
        ax.set_title(backbone)
        _accuracy_axis(ax)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return [save_figure(fig, out, "accuracy_vs_reduction", "Accuracy vs reduction ratio",
                        "Mean test accuracy with 95% CI against the reduction ratio, one line per attention type and "
                        "position; where other factors vary, the point is the mean over those arms, drawn without "
                        "a band. The black line and band are the baseline.")]


MIN_IMPORTANCE_TRIALS = 20  # fANOVA on a handful of trials ranks noise


# ---------------------------------------------------------------- cost


def cost_overhead(table: pd.DataFrame, batch_sizes: tuple[int, ...], out: Path) -> list[Figure]:
    """% params, % MACs (both policies), % latency per batch size and % training step per attention type.

    Measured overheads are the medians of per-round ratios (ablate.timing); the bars show them without
    their CIs, which the cost table prints."""
    arms = table[~table["is_baseline"]]
    metrics = {"params_vs_none_pct": "params", "macs_fvcore_default_vs_none_pct": "MACs (fvcore default)",
               "macs_full_vs_none_pct": "MACs (full)"}
    for b in batch_sizes:
        metrics[Columns.overhead(Columns.latency_metric(b))[0]] = f"latency b{b}"
    metrics[Columns.overhead(Columns.TRAIN_STEP)[0]] = "training step"
    metrics = {k: v for k, v in metrics.items() if k in arms}
    long = arms.melt(id_vars=["backbone", "attention"], value_vars=list(metrics), var_name="metric", value_name="pct")
    long = long.dropna(subset=["pct"]).assign(metric=lambda d: d["metric"].map(metrics))
    if long.empty:
        return []
    backbones = _backbones(long)
    n_types = long["attention"].nunique()
    fig, axes = _subplots(len(backbones), width=max(6.5, 1.3 * n_types + 2), height=4.5, ncols=1)
    for ax, backbone in zip(axes, backbones):
        sns.barplot(data=long[long["backbone"] == backbone], x="attention", y="pct", hue="metric",
                    hue_order=list(metrics.values()), errorbar=None, ax=ax, palette="Set2")
        ax.axhline(0, color="black", lw=0.8)
        for bars in ax.containers:
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
        ax.set_xlabel("attention type (mean over its arms)")
        ax.set_ylabel("overhead vs baseline (%)")
        ax.set_title(backbone)
        ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    fig.tight_layout()
    return [save_figure(fig, out, "cost_overhead", "Cost overhead per attention type",
                        "Relative cost over the same backbone's baseline, averaged over each type's arms: parameters, "
                        "MACs under both counting policies (fvcore's default counts elementwise gating as zero), "
                        "measured latency per batch size and training-step time (medians of per-round ratios to the "
                        "baseline timed in the same interleaved round; CIs in the cost table). When latency bars "
                        "dwarf MAC bars, FLOPs hide the real cost.")]


# ---------------------------------------------------------------- training dynamics


def _band(ax: plt.Axes, frame: pd.DataFrame, x: str, y: str, color: object, label: str, ls: str = "-") -> None:
    g = frame.groupby(x)[y].agg(["mean", "min", "max"]).reset_index()
    ax.plot(g[x], g["mean"], color=color, label=label, ls=ls, marker="o" if len(g) < 4 else None, ms=4)
    if frame["seed"].nunique() > 1:
        ax.fill_between(g[x], g["min"], g["max"], color=color, alpha=0.15, lw=0)


def training_curves(collected: Collected, table: pd.DataFrame, out: Path) -> list[Figure]:
    """ref000's epoch plots per backbone and attention type: its arms and the baseline overlaid.

    Accuracy and loss panels; solid = evaluation split, dashed = training; mean over seeds with a
    min-max band.
    """
    if collected.curves.empty:
        return []
    split = collected.eval_split
    curves = collected.curves.merge(table[["arm", "backbone", "attention", "is_baseline"]], on="arm")
    figures = []
    for backbone in _backbones(curves):
        cb = curves[curves["backbone"] == backbone]
        base = cb[cb["is_baseline"]]
        for attention in [a for a in dict.fromkeys(cb["attention"]) if a != "none"] or ["none"]:
            arms = cb[(cb["attention"] == attention) & ~cb["is_baseline"]]
            palette = dict(zip(dict.fromkeys(arms["arm"]), sns.color_palette("husl", max(1, arms["arm"].nunique()))))
            groups = ([(base["arm"].iloc[0], base, "black")] if not base.empty else []) + [
                (arm, g, palette[arm]) for arm, g in arms.groupby("arm", sort=False)]
            fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
            for ax, (metric, label) in zip(axes, (("acc", "accuracy (%)"), ("loss", "loss (cross-entropy)"))):
                for arm, g, color in groups:
                    _band(ax, g, "epoch", f"eval_{metric}", color, short(arm, backbone))
                    _band(ax, g, "epoch", f"train_{metric}", color, "_nolegend_", ls="--")
                ax.set_xlabel("epoch")
                ax.set_ylabel(label)
                ax.xaxis.get_major_locator().set_params(integer=True)
                if metric == "acc":
                    _accuracy_axis(ax)
            handles, labels = axes[0].get_legend_handles_labels()
            handles += [Line2D([], [], color="grey", label=f"{split} (solid)"),
                        Line2D([], [], color="grey", ls="--", label="training (dashed)")]
            fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
            fig.suptitle(f"{backbone}: {attention} arms vs baseline (mean over seeds, band = min..max)")
            fig.tight_layout()
            figures.append(save_figure(
                fig, out, f"curves_{backbone}_{attention}", f"Training curves: {backbone} / {attention}",
                f"Per-epoch accuracy and loss on the {split} split (solid) and on the training batches (dashed) "
                f"of every {attention} arm on {backbone} and of the baseline (black): mean over seeds, shaded band "
                "from the lowest to the highest seed."))
    return figures


def iteration_loss(collected: Collected, table: pd.DataFrame, out: Path) -> list[Figure]:
    """ref000's per-iteration loss curve, for every arm: one small panel per arm, shared y axis."""
    if collected.iters.empty:
        return []
    iters = collected.iters.merge(table[["arm", "backbone", "attention"]], on="arm")
    colors = attention_colors()
    figures = []
    for backbone in _backbones(iters):
        ib = iters[iters["backbone"] == backbone]
        arms = list(dict.fromkeys(a for a in table["arm"] if a in set(ib["arm"])))
        ncols = min(4, len(arms))
        fig, axes = _subplots(len(arms), width=4.2, height=2.8, ncols=ncols)
        ymax = float(ib.groupby(["arm", "step"])["loss"].mean().max()) * 1.05
        for ax, arm in zip(axes, arms):
            g = ib[ib["arm"] == arm]
            _band(ax, g, "step", "loss", colors.get(g["attention"].iloc[0], "grey"), "loss")
            ax.set_title(short(arm, backbone), fontsize=8)
            ax.set_ylim(0, ymax)
            ax.set_xlabel("iteration (batch)", fontsize=8)
            ax.set_ylabel("training loss", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.suptitle(f"{backbone}: per-iteration training loss (mean over seeds, band = min..max)")
        fig.tight_layout()
        figures.append(save_figure(
            fig, out, f"iteration_loss_{backbone}", f"Per-iteration loss: {backbone}",
            "Training loss of sampled iterations (every runtime.loss_every-th batch), one panel per arm, mean "
            "over seeds with a min-max band; the same y scale in every panel."))
    return figures


# ---------------------------------------------------------------- tuning


def tuning_plots(tuning: Mapping[str, optuna.Study], out: Path) -> tuple[list[Figure], list[str]]:
    """Optuna's own optimization history and parameter importances, per tuning group."""
    from optuna.visualization import matplotlib as ovm

    # optuna's plots switch the global style to ggplot (kept inside rc_context); its importance evaluator
    # warns when a handful of trials cannot separate parameters (the caption says so already)
    with plt.rc_context(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
        return _tuning_plots(ovm, tuning, out)


def _tuning_plots(ovm: Any, tuning: Mapping[str, optuna.Study], out: Path) -> tuple[list[Figure], list[str]]:
    figures: list[Figure] = []
    notes: list[str] = []
    for group, tune in tuning.items():
        done = tune.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not done:
            notes.append(f"tuning group {group}: no completed trial yet.")
            continue
        ax = ovm.plot_optimization_history(tune)
        ax.set_ylabel("best validation accuracy (%)")
        ax.set_xlabel("trial")
        ax.set_title(f"Optimization history: {group}")
        figures.append(save_figure(ax.figure, out, f"tune_history_{slug(group)}", f"Tuning history: {group}",
                                   f"Validation accuracy (%) of each tuning trial of group {group} and the best "
                                   "so far."))
        if len(done) < MIN_IMPORTANCE_TRIALS or not done[0].params:
            notes.append(f"tuning group {group}: {len(done)} completed trial(s); parameter importances are drawn "
                         f"from {MIN_IMPORTANCE_TRIALS} or more only (fewer say nothing about which parameter "
                         "matters).")
            continue
        try:
            ax = ovm.plot_param_importances(tune)
        except (ValueError, RuntimeError) as err:  # e.g. every trial had the same value
            plt.close("all")
            notes.append(f"tuning group {group}: parameter importances unavailable ({err}).")
            continue
        ax.set_title(f"Hyperparameter importances: {group}")
        figures.append(save_figure(ax.figure, out, f"tune_importance_{slug(group)}", f"Tuning importances: {group}",
                                   f"Importance of each tuned hyperparameter for group {group}, by Optuna's default "
                                   "importance evaluator (a share of the variation in validation accuracy; with few "
                                   "trials, a rough guide)."))
    return figures, notes
