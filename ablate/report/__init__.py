"""`write_report(study)`: reports/<study>/report.md, figures/*.png and tables/*.csv from storage alone.

collect (storage -> frames) -> tables (seed statistics, costs vs baseline) -> figures (charts) ->
diagnostics (checkpoints -> feature maps, Grad-CAM, attention gates) -> markdown. Nothing is
retrained; a partial study is reported with what it lacks. report.md is written last, atomically,
so it only ever links files that exist; files an earlier report wrote and this one did not (an arm
dropped, diagnostics turned off) are then removed, and nothing else in the folder is touched.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

from ..artifacts import artifact_dir
from ..files import check_report_dir, mark_report_folder, remove_stale_temps
from ..spec import Study
from .collect import Collected, collect
from .dashboard import publish
from .diagnostics import run_diagnostics
from .figures import (
    accuracy_vs_cost,
    accuracy_vs_reduction,
    cost_overhead,
    diff_heatmap,
    forest,
    iteration_loss,
    theme,
    training_curves,
    tuning_plots,
)
from .markdown import Sections, dashboard_note, excerpt, git_state, render
from .output import replace_manifest, write_csv, write_text
from .tables import (
    arm_table,
    comparisons,
    cost_view,
    factor_pivot,
    factor_table,
    provenance_view,
    seed_table,
    seed_view,
    summary_view,
    swept_factors,
)

__all__ = ["Collected", "collect", "default_output", "write_report"]


def default_output(study: Study) -> Path:
    """The study's own output folder, refused unless it is a folder under reports/ (a Study built by hand
    skips the study file's check)."""
    return check_report_dir(study.output, f"{study.path}: output")


def write_report(study: Study, *, out_dir: str | Path | None = None, diagnostics: bool = True,
                 data_dir: str | None = None) -> Path:
    """Write the report of `study` and return the path of its report.md.

    Plot styling happens inside an rc_context, so the caller's matplotlib settings are untouched.
    """
    out = Path(out_dir) if out_dir is not None else default_output(study)
    c = collect(study)  # storage read and checked before anything is written
    mark_report_folder(out, study.name)  # before the first file: a killed report leaves a folder known as ours
    remove_stale_temps(out)  # what a killed earlier report left half-written
    with matplotlib.rc_context():
        theme()
        return _write(c, out, diagnostics, data_dir)


def _write(collected: Collected, out: Path, diagnostics: bool, data_dir: str | None) -> Path:
    commit = git_state(out)  # before this report writes anything into a checked-in folder
    found = comparisons(collected)
    t, seeds = arm_table(collected, found), seed_table(found)
    sizes = collected.batch_sizes
    notes: list[str] = []

    csvs = {"tables/arms.csv": t, "tables/per_seed.csv": seeds, "tables/runs.csv": collected.runs,
            "tables/items.csv": collected.items, "tables/curves.csv": collected.curves}
    factors = {}
    for factor in swept_factors(t):
        long = factor_table(t, factor)
        csvs[f"tables/factor_{factor}.csv"] = long
        factors[factor] = factor_pivot(long, factor)
    for rel, frame in csvs.items():
        write_csv(out / rel, frame)

    heatmap = diff_heatmap(t, out)  # attention x position: shown with the position factor when it is swept
    factor_figures = {"reduction": accuracy_vs_reduction(t, out) if "reduction" in factors else [],
                      "position": heatmap if "position" in factors else []}
    latency = (accuracy_vs_cost(t, out, "latency", f"latency at batch {min(sizes)} (ms)", "acc_vs_latency",
                                "latency") if sizes else [])
    tune_figs, tune_notes = tuning_plots(collected.tuning, out)
    figures = {
        "Accuracy vs cost": accuracy_vs_cost(t, out, "macs_full", "MACs per image, full policy (millions)",
                                             "acc_vs_macs", "MACs", scale=1e6) + latency,
        "Effect vs baseline": forest(t, out),
        "Accuracy difference by attention type and position": [] if "position" in factors else heatmap,
        "Cost overhead": cost_overhead(t, sizes, out),
        "Training curves": training_curves(collected, t, out),
        "Per-iteration loss": iteration_loss(collected, t, out),
        "Hyperparameter tuning (Optuna)": tune_figs,
    }
    notes += tune_notes
    if collected.study.tuning.enabled and not collected.tuning:
        notes.append("tuning is enabled but storage holds no tuning study yet.")
    if collected.iters.empty and len(collected.runs):
        notes.append("no per-iteration losses stored (runs shorter than runtime.loss_every steps).")

    diag_figures, diag_arms = [], []
    if diagnostics:
        d = run_diagnostics(collected, t, out, data_dir=data_dir)
        diag_figures, diag_arms = d.figures, d.arms
        notes += d.notes
    else:
        notes.append("visual diagnostics were turned off (--no-diagnostics).")

    sections = Sections(summary=summary_view(t, sizes, collected.study.min_effect_pp), costs=cost_view(t, sizes),
                        images=seed_view(seeds), provenance=provenance_view(t), factors=factors,
                        factor_figures=factor_figures, figures=figures, diagnostics=diag_figures,
                        diagnostic_arms=diag_arms, notes=notes, tables=list(csvs), commit=commit)
    report = out / "report.md"
    write_text(out / "excerpt.md", excerpt(collected, t, sections))
    write_text(report, render(collected, t, sections, sizes))
    written = list(csvs) + [f.path for group in (*figures.values(), *factor_figures.values(), diag_figures)
                            for f in group]
    replace_manifest(out, written)
    if collected.final is not None:
        artifacts = artifact_dir(collected.study.storage, collected.study.run_dir, collected.study.artifacts)
        note = dashboard_note(collected, t, sections, str(report))
        publish(collected.final, t, note, artifacts, out, ["report.md", *written])
    return report
