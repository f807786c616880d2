"""`ablate report A.yaml B.yaml --out reports/compare-A-B`: studies side by side on their shared arms.

The same grid on two datasets (or two recipes) is a question users ask next: does SE's gain on
Fashion-MNIST carry over to CIFAR-10, and does its cost? Each study keeps its own statistics (its
own seeds, baseline and Holm family); this view only lines them up by arm id, so no number here
is computed across studies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import AblateError
from ..files import mark_report_folder, remove_stale_temps
from ..spec import Study
from .collect import collect
from .markdown import escape, table
from .output import Figure, replace_manifest, save_figure, write_csv, write_text
from .tables import arm_table, fmt

KEYS = ("arm", "backbone", "attention", "position", "reduction")
PER_STUDY = ("n", "acc_mean", "acc_ci_low", "acc_ci_high", "diff", "diff_ci_low", "diff_ci_high", "p_holm", "verdict",
             "params", "macs_full", "latency", "latency_overhead_pct")


def side_by_side(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per arm present in every study; per-study columns suffixed with the study name."""
    merged: pd.DataFrame | None = None
    for name, t in tables.items():
        part = t[[*KEYS, *PER_STUDY]].rename(columns={c: f"{c} [{name}]" for c in PER_STUDY})
        merged = part if merged is None else merged.merge(part, on=list(KEYS), how="inner")
    assert merged is not None
    return merged.reset_index(drop=True)


def view(merged: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The markdown table: accuracy with CI, Δ vs baseline with verdict, MACs and latency per study."""
    rows = []
    for _, r in merged.iterrows():
        row: dict[str, str] = {"arm": str(r["arm"])}
        for n in names:
            row[f"acc % [{n}]"] = (f"{fmt(r[f'acc_mean [{n}]'])} [{fmt(r[f'acc_ci_low [{n}]'])}, "
                                   f"{fmt(r[f'acc_ci_high [{n}]'])}] (n={int(r[f'n [{n}]'])})")
            diff = r[f"diff [{n}]"]
            row[f"Δ pp [{n}]"] = ("-" if pd.isna(diff) else
                                  f"{diff:+.2f} [{r[f'diff_ci_low [{n}]']:+.2f}, {r[f'diff_ci_high [{n}]']:+.2f}] "
                                  f"{r[f'verdict [{n}]']}")
            row[f"MACs (M) [{n}]"] = fmt(r[f"macs_full [{n}]"] / 1e6 if pd.notna(r[f"macs_full [{n}]"]) else None)
            row[f"latency ms [{n}]"] = fmt(r[f"latency [{n}]"], ".3f")
        rows.append(row)
    return pd.DataFrame(rows)


def effect_figure(merged: pd.DataFrame, names: Sequence[str], out: Path) -> list[Figure]:
    """Δ vs baseline with its 95% CI, one colour per study, arms on the y axis."""
    arms = merged[merged[[f"diff [{n}]" for n in names]].notna().any(axis=1)]
    if arms.empty:
        return []
    fig, ax = plt.subplots(figsize=(8.5, 1.4 + 0.4 * len(arms)))
    y = np.arange(len(arms))
    step = 0.6 / max(len(names), 1)
    for i, n in enumerate(names):
        d, lo, hi = (arms[f"{k} [{n}]"].astype(float) for k in ("diff", "diff_ci_low", "diff_ci_high"))
        ax.errorbar(d, y - 0.3 + step * (i + 0.5), xerr=[(d - lo).fillna(0), (hi - d).fillna(0)], fmt="o",
                    capsize=3, label=n)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, list(arms["arm"]), fontsize=8)
    ax.set_xlabel("test accuracy − the study's own baseline (pp), 95% CI")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return [save_figure(fig, out, "compare_effect", "Effect vs baseline, per study",
                        "Each study's own primary comparison (seeds and test images) with its own baseline and Holm "
                        "family; "
                        "only the arm ids are shared.")]


def write_comparison(studies: Sequence[Study], out: Path) -> Path:
    """Write out/report.md, tables/compare.csv and one figure for two or more studies; returns report.md."""
    names = [s.name for s in studies]
    if len(set(names)) != len(names):
        raise AblateError(f"compare: study names must differ, got {', '.join(names)}.")
    tables = {s.name: arm_table(collect(s)) for s in studies}
    merged = side_by_side(tables)
    if merged.empty:
        raise AblateError(f"compare: studies {', '.join(names)} share no arm (same backbone, attention, position "
                          "and reduction); nothing to put side by side.")
    owner = "compare-" + "-".join(names)
    mark_report_folder(out, owner)  # before the first file: a killed report leaves a folder recognised as ours
    remove_stale_temps(out)
    write_csv(out / "tables/compare.csv", merged)
    figs = effect_figure(merged, names, out)
    lines = [f"# Comparison: {escape(' vs '.join(names))}", "",
             f"{len(merged)} arm(s) appear in every study. Each study's numbers come from its own report's "
             "statistics (its seeds, baseline and Holm correction); nothing is pooled across studies.", "",
             *[f"- {escape(s.name)}: {escape(s.path)}, dataset {escape(s.dataset.name)}, "
               f"{len(tables[s.name])} arms" for s in studies], "",
             table(view(merged, names)), ""]
    for f in figs:
        lines += [f"![{escape(f.title)}]({f.path})", "", escape(f.caption), ""]
    lines += ["Full numbers: [tables/compare.csv](tables/compare.csv).", ""]
    report = out / "report.md"
    write_text(report, "\n".join(lines))
    replace_manifest(out, ["tables/compare.csv", *[f.path for f in figs]])
    return report
