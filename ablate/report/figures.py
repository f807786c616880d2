"""The report's charts (seaborn / matplotlib, PNG), each readable on its own: units on every axis.

Each function takes the frames from `collect`/`tables`, writes zero or more PNGs under
`<report>/figures/`, and returns their `Figure` records (an empty list when the study has nothing
to show yet, e.g. a single reduction ratio or no finished trials). Every attention type of a study
gets its own colour, and from the eleventh type on a second channel (marker, fill, hatch), so any
number of types stays apart (`attention_styles`). Intervals are the results table's primary
columns; legends list only what is drawn.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .. import stats
from ..attention import ATTENTION
from ..columns import Columns
from .collect import Collected
from .output import Figure, save_figure, slug

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")  # positions, in scatter charts
COLORS_PER_BLOCK = 10  # types beyond the first ten also differ by a second channel
BLOCK_MARKERS = ("o", "s", "^", "D", "v", "P")
BLOCK_FILLS = ("full", "none", "left", "top", "right", "bottom")
BLOCK_HATCHES = ("", "////", "xxxx", "....", "\\\\", "++++")
BLOCK_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))


def theme() -> None:
    """The report's look; write_report applies it inside matplotlib.rc_context, so callers keep theirs."""
    sns.set_theme(style="whitegrid", context="notebook")


@dataclass(frozen=True)
class Style:
    """How one attention type is drawn: a colour, and the second channel each kind of chart can use.

    A scatter chart whose marker shape already encodes the position uses `fill`; a line chart whose
    line style encodes the position uses `marker`; bars use `hatch`.
    """

    color: tuple[float, float, float]
    marker: str = "o"
    fill: str = "full"
    hatch: str = ""
    linestyle: Any = "-"


def attention_order(names: Iterable[str]) -> list[str]:
    """The study's attention types (without 'none'): registry order first, then other names sorted."""
    present = {str(n) for n in names if isinstance(n, str)} - {"none"}
    return [n for n in ATTENTION if n in present] + sorted(present - set(ATTENTION))


def _palette(n: int) -> list[tuple[float, float, float]]:
    """n distinct colours: tab20 with its ten strong shades first (= tab10) up to 20, else evenly spaced hues."""
    if n <= 20:
        tab20 = sns.color_palette("tab20", 20)
        return [tuple(c) for c in (tab20[0::2] + tab20[1::2])[:n]]
    return [tuple(c) for c in sns.color_palette("husl", n)]


def attention_styles(names: Iterable[str]) -> dict[str, Style]:
    """One style per attention type of a study, 'none' in black; deterministic for a given set of types.

    Colours are distinct for any number of types (a palette sized to the study); the eleventh type on
    also gets another marker / fill / hatch / line style, so a light shade is never the only cue.
    Callers pass every type of the study (finished or not), so the styles do not change as runs complete.
    """
    types = attention_order(names)
    colors = _palette(len(types))
    styles = {"none": Style((0.0, 0.0, 0.0))}
    for i, name in enumerate(types):
        block = i // COLORS_PER_BLOCK
        styles[name] = Style(colors[i], BLOCK_MARKERS[block % len(BLOCK_MARKERS)],
                             BLOCK_FILLS[block % len(BLOCK_FILLS)], BLOCK_HATCHES[block % len(BLOCK_HATCHES)],
                             BLOCK_LINESTYLES[block % len(BLOCK_LINESTYLES)])
    return styles


def _style(styles: Mapping[str, Style], attention: Any) -> Style:
    return styles.get(attention, Style((0.5, 0.5, 0.5)))


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
    styles = attention_styles(table["attention"])
    positions = list(dict.fromkeys(done["position"].dropna()))
    marker = {p: MARKERS[i % len(MARKERS)] for i, p in enumerate(positions)}
    backbones = _backbones(done)
    fig, axes = _subplots(len(backbones))
    for ax, backbone in zip(axes, backbones):
        sub = done[done["backbone"] == backbone].copy()
        sub[x] = sub[x].astype(float)
        for _, r in sub.iterrows():
            st = _style(styles, r["attention"])  # marker shape = position, so the type's second channel is the fill
            ax.errorbar(r[x], r["acc_mean"], yerr=_half_ci(r), fmt=marker.get(r["position"], "o"), ms=7,
                        color=st.color, ecolor=st.color, fillstyle=st.fill, capsize=3, alpha=0.9,
                        mec="black" if r["is_baseline"] else st.color)
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
    drawn = set(done["attention"])
    handles = [Line2D([], [], color=styles[a].color, marker="o", fillstyle=styles[a].fill, ls="", label=a)
               for a in ["none", *attention_order(drawn)] if a in drawn]
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


VERDICT_COLORS = {stats.BETTER: "tab:green", stats.WORSE: "tab:red", stats.SAME: "0.4", stats.UNTESTED: "0.7"}


def forest(table: pd.DataFrame, out: Path) -> list[Figure]:
    """Difference from the baseline with the primary comparison's 95% CI, one row per arm, coloured by verdict."""
    arms = done_arms(table[~table["is_baseline"]]).dropna(subset=["diff"])
    if arms.empty:
        return []
    arms = arms.sort_values(["backbone", "diff"])
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.32 * len(arms)))
    y = np.arange(len(arms))
    for i, (_, r) in enumerate(arms.iterrows()):
        lo, hi = r["diff_ci_low"], r["diff_ci_high"]
        err = [[r["diff"] - lo], [hi - r["diff"]]] if math.isfinite(lo) and math.isfinite(hi) else None
        ax.errorbar(r["diff"], i, xerr=err, fmt="o", color=VERDICT_COLORS.get(r["verdict"], "0.4"), capsize=3)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, list(arms["arm"]), fontsize=8)
    ax.set_xlabel("test accuracy − baseline (percentage points), 95% CI of the primary comparison")
    ax.set_title("Effect of each arm vs its baseline")
    present = [v for v in VERDICT_COLORS if v in set(arms["verdict"])]  # no legend entry without a point
    ax.legend(handles=[Line2D([], [], color=VERDICT_COLORS[v], marker="o", ls="", label=v) for v in present],
              loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return [save_figure(fig, out, "effect_vs_baseline", "Effect vs baseline",
                        "Difference in mean test accuracy from the same backbone's baseline with the 95% CI of the "
                        "primary comparison in the Results table (columns diff, diff_ci_low, diff_ci_high); colour = "
                        "the table's verdict (multiplicity-corrected across all arms).")]


DIFF_LIMIT_PP = 2.0  # the heatmap's fixed colour range, +- pp: the same in every study and rerun


@dataclass(frozen=True)
class HeatCell:
    """One heatmap cell: the arms of one attention type x position (other factors averaged)."""

    value: float
    text: str
    significant: bool  # every arm in the cell has a significant verdict, in the same direction
    covers_zero: bool  # every arm's 95% CI covers 0 (or has none)


def heat_cell(arms: pd.DataFrame) -> HeatCell:
    """A single arm prints its difference and CI; several print their mean and count, no CI (a mean of
    intervals is not an interval)."""
    diffs = arms["diff"].astype(float)
    signed = [np.sign(d) if v in (stats.BETTER, stats.WORSE) else 0.0 for d, v in zip(diffs, arms["verdict"])]
    significant = abs(sum(signed)) == len(arms)
    lo, hi = arms["diff_ci_low"].astype(float), arms["diff_ci_high"].astype(float)
    covers = [not (math.isfinite(a) and math.isfinite(b)) or a <= 0 <= b for a, b in zip(lo, hi)]
    star = "*" if significant else ""
    value = float(diffs.mean())
    if len(arms) > 1:
        text = f"{value:+.2f}{star}\nmean of {len(arms)} arms"
    elif math.isfinite(lo.iloc[0]) and math.isfinite(hi.iloc[0]):
        text = f"{value:+.2f}{star}\n[{lo.iloc[0]:+.2f}, {hi.iloc[0]:+.2f}]"
    else:
        text = f"{value:+.2f}\nno CI"
    return HeatCell(value, text, significant, all(covers))


def _heat_panel(ax: plt.Axes, sub: pd.DataFrame, limit: float) -> None:
    cells = {key: heat_cell(g) for key, g in sub.groupby(["attention", "position"])}
    rows = [a for a in attention_order(sub["attention"]) if any(k[0] == a for k in cells)]
    cols = list(dict.fromkeys(sub["position"]))
    grid = pd.DataFrame([[cells[(a, p)].value if (a, p) in cells else np.nan for p in cols] for a in rows],
                        index=rows, columns=cols)
    with warnings.catch_warnings():  # seaborn 0.13 calls a colormap method matplotlib 3.11 deprecates
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(grid, ax=ax, annot=False, cmap="RdBu", center=0, vmin=-limit, vmax=limit, linewidths=0.5,
                    cbar_kws={"label": f"Δ accuracy vs baseline (pp)\nfixed scale ±{limit:g} pp, beyond it saturates",
                              "extend": "both"})
    for i, a in enumerate(rows):
        for j, p in enumerate(cols):
            cell = cells.get((a, p))
            if cell is None:
                continue
            if cell.covers_zero:
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="//", edgecolor="0.6", lw=0))
            dark = abs(cell.value) > 0.6 * limit  # faded text where the CI covers 0, readable on either shade
            color = ("0.85" if cell.covers_zero else "white") if dark else ("0.35" if cell.covers_zero else "black")
            ax.text(j + 0.5, i + 0.5, cell.text, ha="center", va="center", fontsize=8, color=color,
                    fontweight="bold" if cell.significant else "normal")
    ax.set_xlabel("position")
    ax.set_ylabel("attention type")


def diff_heatmap(table: pd.DataFrame, out: Path, limit_pp: float = DIFF_LIMIT_PP) -> list[Figure]:
    """Accuracy difference vs baseline: attention type x position, faceted by backbone and ratio.

    The colour scale is fixed (+- limit_pp), not set by the largest difference, so the noisiest arm
    does not always saturate and two reruns' heatmaps compare by eye.
    """
    arms = done_arms(table[~table["is_baseline"]]).dropna(subset=["diff"])
    if arms.empty:
        return []
    arms = arms.assign(position=arms["position"].fillna("-"))
    ratios = sorted({int(r) for r in arms["reduction"].dropna()})
    facets = [(b, r) for b in _backbones(arms) for r in (ratios or [None])]
    ncols = max(1, len(ratios))
    fig, axes = _subplots(len(facets), width=max(5.0, 3.2 + 1.6 * arms["position"].nunique()),
                          height=1.6 + 0.6 * arms["attention"].nunique(), ncols=ncols)
    for ax, (backbone, ratio) in zip(axes, facets):
        sub = arms[(arms["backbone"] == backbone)
                   & (arms["reduction"].isna() | (arms["reduction"] == ratio) if ratio is not None else True)]
        ax.set_title(f"{backbone}" + (f", reduction r={ratio}" if ratio else "") + ("" if len(sub) else ": no arm"),
                     fontsize=10)
        if sub.empty:
            ax.set_axis_off()
            continue
        _heat_panel(ax, sub, limit_pp)
    fig.tight_layout()
    return [save_figure(fig, out, "accuracy_diff_heatmap", "Accuracy difference heatmap",
                        "Test-accuracy difference from the baseline (percentage points) by attention type and "
                        "position, one panel per backbone and reduction ratio (types without a ratio appear in every "
                        f"panel). Colour on a fixed scale of ±{limit_pp:g} pp in every study and rerun (larger "
                        "differences saturate; the number is printed). A cell of one arm prints its difference and "
                        "the 95% CI [low, high] of the primary comparison (Results table); a cell that averages "
                        "several arms (other factors) prints their mean and count, no CI. Bold with * = every arm in "
                        "the cell has a significant verdict (multiplicity-corrected), in the same direction; "
                        "hatched with grey text = every arm's CI covers 0.")]


def accuracy_vs_reduction(table: pd.DataFrame, out: Path) -> list[Figure]:
    """Accuracy against reduction ratio per attention type (and position), baseline as a band."""
    arms = done_arms(table[~table["is_baseline"] & table["reduction"].notna()])
    if arms.empty or arms["reduction"].nunique() < 2:
        return []
    styles = attention_styles(table["attention"])
    backbones = _backbones(arms)
    fig, axes = _subplots(len(backbones))
    line_styles = ["-", "--", ":", "-."]
    for ax, backbone in zip(axes, backbones):
        sub = arms[arms["backbone"] == backbone]
        positions = dict.fromkeys(sub["position"].fillna("-"))
        pos_style = {p: line_styles[i % len(line_styles)] for i, p in enumerate(positions)}
        for (attention, position), g in sub.groupby(["attention", sub["position"].fillna("-")]):
            # one arm per ratio: its own CI; several (other factors vary): their mean, no band (an average of
            # CI bounds is not a CI)
            g = g.groupby("reduction").agg(acc=("acc_mean", "mean"), lo=("acc_ci_low", "first"),
                                           hi=("acc_ci_high", "first"), k=("arm", "count")
                                           ).reset_index().sort_values("reduction")
            err = ((g["hi"] - g["lo"]) / 2).where(g["k"] == 1).fillna(0)
            st = _style(styles, attention)  # line style = position, so the type's second channel is the marker
            ax.errorbar(g["reduction"].astype(float), g["acc"], yerr=err, capsize=3, marker=st.marker,
                        ls=pos_style[position], color=st.color, label=f"{attention} @ {position}")
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


COUNTED, MEASURED, NOISE, NO_CI = ("counted (exact, no CI)", "measured, 95% CI excludes 0",
                                  "measured, 95% CI covers 0: within timing noise", "measured, no CI")
COST_COLORS = {"counted": (0.30, 0.45, 0.69), "measured": (0.87, 0.52, 0.32)}


def cost_metrics(table: pd.DataFrame, batch_sizes: tuple[int, ...]) -> dict[str, tuple[str, str | None, str | None]]:
    """Panel title -> (overhead %, CI low %, CI high %) columns, for the metrics this table holds values of.

    Parameters and MACs are counted (exact, no interval); latency and training step are measured,
    with the CI of the median per-round ratio (ablate.timing)."""
    metrics: dict[str, tuple[str, str | None, str | None]] = {
        "params": ("params_vs_none_pct", None, None),
        "MACs (fvcore default)": ("macs_fvcore_default_vs_none_pct", None, None),
        "MACs (full)": ("macs_full_vs_none_pct", None, None)}
    for b in batch_sizes:
        metrics[f"latency b{b}"] = Columns.overhead(Columns.latency_metric(b))
    metrics["training step"] = Columns.overhead(Columns.TRAIN_STEP)
    return {k: v for k, v in metrics.items()
            if v[0] in table and pd.to_numeric(table[v[0]], errors="coerce").notna().any()}


def _overhead_bar(ax: plt.Axes, y: int, row: pd.Series, cols: tuple[str, str | None, str | None],
                  seen: set[str]) -> None:
    """One horizontal bar: solid when counted or clear of 0, hollow and hatched when the CI covers 0."""
    value = float(pd.to_numeric(row.get(cols[0]), errors="coerce"))
    if not math.isfinite(value):
        ax.text(0, y, " n/a", va="center", fontsize=7, color="0.4")
        return
    lo, hi = (float(pd.to_numeric(row.get(c), errors="coerce")) if c else math.nan for c in cols[1:])
    has_ci = math.isfinite(lo) and math.isfinite(hi)
    if cols[1] is None:
        kind, color = COUNTED, COST_COLORS["counted"]
    else:
        kind = (NOISE if lo <= 0 <= hi else MEASURED) if has_ci else NO_CI
        color = COST_COLORS["measured"]
    ax.barh(y, value, height=0.7, color="none" if kind == NOISE else color, edgecolor=color,
            hatch="////" if kind == NOISE else None, alpha=0.5 if kind == NO_CI else 1.0, lw=1.2,
            label=kind if kind not in seen else "_nolegend_")
    seen.add(kind)
    if has_ci:
        ax.errorbar(value, y, xerr=[[max(value - lo, 0.0)], [max(hi - value, 0.0)]], fmt="none", ecolor="black",
                    capsize=3, lw=1)
    end = hi if has_ci and value >= 0 else (lo if has_ci else value)
    ax.annotate(f"{'~' if kind == NOISE else ''}{value:+.1f}", (end, y), xytext=(3 if value >= 0 else -3, 0),
                textcoords="offset points", va="center", ha="left" if value >= 0 else "right", fontsize=7)


def cost_overhead(table: pd.DataFrame, batch_sizes: tuple[int, ...], out: Path) -> list[Figure]:
    """% params, % MACs (both policies), % latency per batch size and % training step of every arm.

    One column of panels per metric on one shared x axis (so latency next to MACs shows what FLOPs
    hide), one row per backbone, one bar per arm; measured overheads carry their 95% CIs."""
    arms = table[~table["is_baseline"]]
    metrics = cost_metrics(arms, batch_sizes)
    arms = arms[arms[[v[0] for v in metrics.values()]].notna().any(axis=1)] if metrics else arms.iloc[0:0]
    if arms.empty:
        return []
    backbones = _backbones(arms)
    counts = [int((arms["backbone"] == b).sum()) for b in backbones]
    fig, axes = plt.subplots(len(backbones), len(metrics), sharex=True, sharey="row", squeeze=False,
                             figsize=(2.7 * len(metrics) + 2.5, 1.0 * len(backbones) + 0.32 * sum(counts) + 0.8),
                             gridspec_kw={"height_ratios": [c + 1.5 for c in counts]})
    seen: set[str] = set()
    for row_axes, backbone in zip(axes, backbones):
        sub = arms[arms["backbone"] == backbone].reset_index(drop=True)
        for ax, (title, cols) in zip(row_axes, metrics.items()):
            for y, r in sub.iterrows():
                _overhead_bar(ax, int(y), r, cols, seen)
            ax.axvline(0, color="black", lw=0.8)
            ax.set_title(title, fontsize=9)
            ax.set_yticks(range(len(sub)), [short(a, backbone) for a in sub["arm"]], fontsize=8)
            ax.set_ylim(len(sub) - 0.5, -0.5)
            ax.tick_params(axis="x", labelsize=8)
        row_axes[0].set_ylabel(backbone)
    for ax in axes[-1]:
        ax.set_xlabel("overhead vs baseline (%)", fontsize=8)
    handles, labels = [], []
    for ax in axes.flat:  # the legend is built from the drawn bars: no entry without one
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=max(1, min(4, len(labels))),
               frameon=False, fontsize=8)
    fig.suptitle("Cost overhead of each arm vs its baseline")
    fig.tight_layout()
    return [save_figure(fig, out, "cost_overhead", "Cost overhead per arm",
                        "Relative cost of each arm over the same backbone's baseline, one panel per metric on a "
                        "shared axis: parameters and MACs under both counting policies (counted, exact; fvcore's "
                        "default counts elementwise gating as zero), measured latency per batch size and "
                        "training-step time (median of per-round ratios to the baseline timed in the same "
                        "interleaved round, black bars = 95% CI). Hollow hatched bars and a '~' mark overheads "
                        "whose CI covers 0 (within timing noise). The CIs cover round-to-round noise within this "
                        "one timing session on this host, not another machine or load. When latency bars dwarf "
                        "MAC bars, FLOPs hide the real cost.")]


# ---------------------------------------------------------------- training dynamics


def _band(ax: plt.Axes, frame: pd.DataFrame, x: str, y: str, color: object, label: str, ls: str = "-") -> None:
    g = frame.groupby(x)[y].agg(["mean", "min", "max"]).reset_index()
    ax.plot(g[x], g["mean"], color=color, label=label, ls=ls, marker="o" if len(g) < 4 else None, ms=4)
    if frame["seed"].nunique() > 1:
        ax.fill_between(g[x], g["min"], g["max"], color=color, alpha=0.15, lw=0)


def training_curves(collected: Collected, table: pd.DataFrame, out: Path) -> list[Figure]:
    """ref000's epoch plots per backbone and attention type: its arms and the baseline overlaid.

    Accuracy and loss panels; solid = evaluation split (validation where the test split was evaluated
    after the last epoch only), dashed = training; mean over seeds with a min-max band.
    """
    if collected.curves.empty:
        return []
    split, solid = collected.eval_split, "eval"
    if collected.curves["eval_acc"].isna().any() and collected.curves["val_acc"].notna().all():
        split, solid = "validation", "val"  # test evaluated after the last epoch only: no test curve to draw
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
                    _band(ax, g, "epoch", f"{solid}_{metric}", color, short(arm, backbone))
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
    styles = attention_styles(table["attention"])
    figures = []
    for backbone in _backbones(iters):
        ib = iters[iters["backbone"] == backbone]
        arms = list(dict.fromkeys(a for a in table["arm"] if a in set(ib["arm"])))
        ncols = min(4, len(arms))
        fig, axes = _subplots(len(arms), width=4.2, height=2.8, ncols=ncols)
        ymax = float(ib.groupby(["arm", "step"])["loss"].mean().max()) * 1.05
        for ax, arm in zip(axes, arms):
            g = ib[ib["arm"] == arm]
            _band(ax, g, "step", "loss", _style(styles, g["attention"].iloc[0]).color, "loss")
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
    # warns when a handful of trials cannot separate parameters (the caption says so already), and its
    # matplotlib plots are marked experimental
    with plt.rc_context(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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
