"""The report inside optuna-dashboard: the final study's note, its plotly figures and its artifacts.

optuna-dashboard shows a study's note (markdown), plotly figures saved on the study and files
attached as artifacts. `publish` writes all three from the same table the report uses. Figures
have fixed ids and artifacts are replaced by file name, so re-running a report replaces what the
last one published and never duplicates it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna_dashboard import save_note, save_plotly_graph_object

from .. import stats
from ..artifacts import attach, open_store
from ..contract import storage_of
from .figures import done_arms

VERDICT_COLORS = {stats.BETTER: "#2ca02c", stats.WORSE: "#d62728", stats.SAME: "#666666", stats.UNTESTED: "#aaaaaa"}


def _whiskers(center: pd.Series, low: pd.Series, high: pd.Series) -> dict:
    """Plotly error bars from CI bounds; an undefined bound (one seed) draws no whisker."""
    c, lo, hi = (pd.to_numeric(x, errors="coerce").astype(float) for x in (center, low, high))
    return dict(type="data", symmetric=False, array=list((hi - c).fillna(0.0)),
                arrayminus=list((c - lo).fillna(0.0)))


def pareto(table: pd.DataFrame, x: str, x_label: str, scale: float = 1.0) -> go.Figure | None:
    """Mean accuracy (95% CI whiskers) against a cost, one trace per backbone, the Pareto front drawn."""
    done = done_arms(table)
    done = done[pd.to_numeric(done[x], errors="coerce").notna()]
    if done.empty:
        return None
    fig = go.Figure()
    for backbone, sub in done.groupby("backbone", sort=False):
        cost = pd.to_numeric(sub[x]).astype(float) / scale
        acc = sub["acc_mean"].astype(float)
        front = stats.pareto_front(cost.tolist(), acc.tolist())
        fig.add_trace(go.Scatter(
            x=list(cost), y=list(acc), mode="markers", name=str(backbone), text=list(sub["arm"]),
            marker=dict(size=[13 if f else 8 for f in front], line=dict(width=[2 if f else 0 for f in front])),
            error_y=_whiskers(acc, sub["acc_ci_low"], sub["acc_ci_high"]),
            hovertemplate="%{text}<br>" + x_label + " %{x:.4g}<br>accuracy %{y:.2f}%<extra></extra>"))
        on_front = sorted((c, a) for c, a, f in zip(cost, acc, front) if f)
        fig.add_trace(go.Scatter(x=[c for c, _ in on_front], y=[a for _, a in on_front], mode="lines",
                                 line=dict(dash="dash", shape="hv", color="#555555"),
                                 name=f"{backbone} Pareto front", hoverinfo="skip"))
    fig.update_layout(title=f"Accuracy vs {x_label} (mean ± 95% CI over seeds; large markers: Pareto front)",
                      xaxis_title=x_label, yaxis_title="test accuracy (%)")
    return fig


def effect(table: pd.DataFrame) -> go.Figure | None:
    """Difference from each backbone's baseline with its 95% CI, coloured by the Holm-corrected verdict."""
    arms = done_arms(table[~table["is_baseline"]]).dropna(subset=["diff"])
    if arms.empty:
        return None
    arms = arms.sort_values(["backbone", "diff"])
    fig = go.Figure()
    for verdict, sub in arms.groupby("verdict", sort=False):
        fig.add_trace(go.Scatter(
            x=list(sub["diff"]), y=list(sub["arm"]), mode="markers", name=str(verdict),
            marker=dict(color=VERDICT_COLORS.get(str(verdict), "#666666"), size=9),
            error_x=_whiskers(sub["diff"], sub["diff_ci_low"], sub["diff_ci_high"])))
    fig.add_vline(x=0, line_color="black")
    fig.update_layout(title="Effect of each arm vs its baseline (test accuracy, pp, 95% CI)",
                      xaxis_title="Δ test accuracy vs baseline (pp)", height=max(350, 120 + 28 * len(arms)))
    return fig


def figures(table: pd.DataFrame) -> dict[str, go.Figure]:
    """Graph id -> figure; the ids are fixed so a new report overwrites the old figures."""
    built = {
        "ablate-accuracy-vs-latency": pareto(table, "latency", "latency (ms, smallest batch)"),
        "ablate-accuracy-vs-macs": pareto(table, "macs_full", "MACs per image (millions)", scale=1e6),
        "ablate-effect-vs-baseline": effect(table),
    }
    return {k: v for k, v in built.items() if v is not None}


def publish(final: optuna.Study, table: pd.DataFrame, note: str, artifact_folder: Path, out: Path,
            files: Iterable[str]) -> list[str]:
    """Note, plotly figures and the report's files on the final study; returns the graph ids saved."""
    save_note(final, note)
    ids = []
    for graph_id, fig in figures(table).items():
        save_plotly_graph_object(final, fig, graph_object_id=graph_id)
        ids.append(graph_id)
    store = open_store(artifact_folder)
    for rel in files:
        path = out / rel
        if path.is_file():
            attach(store, storage_of(final), final, path)
    return ids
