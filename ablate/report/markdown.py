"""report.md: GitHub markdown assembled from the tables, figures and notes, with user text escaped.

Anything that came from a user or from storage (arm ids, the study description, fail reasons,
group names) goes through `escape`, so a '|' cannot break a table and '<script>' or a backtick
cannot turn into markup. Every sentence with a number is computed here from the arm table.
"""

from __future__ import annotations

import datetime as dt
import math
import platform
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .. import stats
from ..columns import MAC_POLICY_TEXT, overhead_text
from ..data import dataset_info
from ..device import cpu_model
from ..errors import AblateError
from ..storage import mask_url
from .collect import Collected
from .output import Figure
from .tables import fmt

_ESCAPES = {"\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]",
            "<": "&lt;", ">": "&gt;", "&": "&amp;", "#": "\\#"}
MAX_STATUS_ROWS = 40


def escape(text: object) -> str:
    """Inline-safe markdown for untrusted text: no markup, no HTML, no table breaks, one line."""
    s = " ".join(str(text).split())
    return "".join(_ESCAPES.get(ch, ch) for ch in s)


def table(frame: pd.DataFrame) -> str:
    """A GitHub table with every header and cell escaped (numbers are pre-formatted strings)."""
    if frame.empty:
        return "_(no rows)_"
    shown = frame.astype(object).where(frame.notna(), "-")
    shown = shown.map(escape)
    shown.columns = [escape(c) for c in frame.columns]
    return shown.to_markdown(index=False, disable_numparse=True)


def figure(fig: Figure, heading: bool = True) -> str:
    """An image with its caption; `heading` adds a level-4 title (off when the section title says it)."""
    title = f"#### {escape(fig.title)}\n\n" if heading else ""
    return f"{title}![{escape(fig.title)}]({fig.path})\n\n_{escape(fig.caption)}_\n"


@dataclass
class Sections:
    """What write_report hands to render: tables as frames, figures grouped by where they go."""

    summary: pd.DataFrame
    costs: pd.DataFrame
    images: pd.DataFrame = field(default_factory=pd.DataFrame)  # per-image paired view
    provenance: pd.DataFrame = field(default_factory=pd.DataFrame)  # hyperparameter source, time to target
    factors: dict[str, pd.DataFrame] = field(default_factory=dict)  # factor -> pivot table
    factor_figures: dict[str, list[Figure]] = field(default_factory=dict)
    figures: dict[str, list[Figure]] = field(default_factory=dict)  # section title -> figures
    diagnostics: list[Figure] = field(default_factory=list)
    diagnostic_arms: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the report could not show, and why
    tables: list[str] = field(default_factory=list)  # CSV files written, relative to the report


# ---------------------------------------------------------------- the words


def _arm_sentence(r: pd.Series, base: pd.Series | None) -> str:
    spread = f" ± {fmt(r['acc_std'])}" if r["n"] > 1 else ""
    acc = f"{fmt(r['acc_mean'])}{spread}% (n={int(r['n'])})"
    if base is None or not math.isfinite(r["diff"]):
        return f"{escape(r['arm'])}, with {acc}"
    ci = f" (95% CI {r['diff_ci_low']:+.2f} to {r['diff_ci_high']:+.2f})" if math.isfinite(r["diff_ci_low"]) else ""
    return (f"{escape(r['arm'])}, with {acc}: {r['diff']:+.2f} pp{ci} vs the baseline's "
            f"{fmt(base['acc_mean'])}% ({r['test']} test, Holm p = {fmt(r['p_holm'], '.3g')}: {r['verdict']}; "
            f"MDE {fmt(r['mde'])} pp), at "
            f"{fmt(r['params_vs_none_pct'], '+.1f')}% parameters, {fmt(r['macs_full_vs_none_pct'], '+.1f')}% MACs "
            f"(full policy) and {overhead_text(r['latency_overhead_pct'], r['latency_overhead_ci_low_pct'], r['latency_overhead_ci_high_pct'])} latency (95% CI)")


def _n_text(arms: pd.DataFrame) -> str:
    ns = sorted({int(v) for v in arms["n"]})
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]} to {ns[-1]}"


def _names(arms: pd.DataFrame, limit: int = 5) -> str:
    """' (a, b, c ...)' for a non-empty frame of arms, else ''."""
    if arms.empty:
        return ""
    return " (" + ", ".join(escape(a) for a in arms["arm"].head(limit)) + (" ..." if len(arms) > limit else "") + ")"


def summary_paragraph(collected: Collected, arm_rows: pd.DataFrame) -> str:
    """The key findings, computed from the arm table: completeness, best arm, significance, cost."""
    items = collected.items
    done = int((items["status"] == "complete").sum())
    plan = collected.study.seed_plan
    seeds = (f"{plan.min} to {plan.max} seeds (precision-targeted)" if plan else f"{len(collected.study.seeds)} seeds")
    parts = [f"This study trains {len(arm_rows)} arms x {seeds} on {escape(collected.study.dataset.name)}; "
             f"{done} of {len(items)} runs are complete."]
    if done == 0:
        return " ".join(parts + ["No final results yet: the tables below hold costs only."])
    for backbone in dict.fromkeys(arm_rows["backbone"]):
        sub = arm_rows[(arm_rows["backbone"] == backbone) & (arm_rows["n"] > 0)]
        base_rows = sub[sub["is_baseline"]]
        base = base_rows.iloc[0] if not base_rows.empty else None
        arms = sub[~sub["is_baseline"]].sort_values("acc_mean", ascending=False)
        if base is None:
            has_baseline = bool(arm_rows[(arm_rows["backbone"] == backbone) & arm_rows["is_baseline"]].shape[0])
            why = "has no result yet" if has_baseline else "is not in the grid (attention 'none')"
            parts.append(f"On {escape(backbone)} the baseline {why}, so no arm is compared with it.")
        if arms.empty:
            continue
        parts.append(f"On {escape(backbone)}, the highest point estimate among {len(arms)} attention arm(s) is "
                     f"{_arm_sentence(arms.iloc[0], base)}. Picking the top of {len(arms)} noisy estimates favours "
                     "an arm that was lucky: its Δ is optimistic, and only its Holm-corrected test speaks for it.")
    tested = arm_rows[~arm_rows["is_baseline"] & arm_rows["p_holm"].notna()]
    better, worse = tested[tested["verdict"] == stats.BETTER], tested[tested["verdict"] == stats.WORSE]
    if len(tested):
        parts.append(f"After Holm correction across {len(tested)} comparisons, {len(better)} arm(s) are better than "
                     f"their baseline{_names(better)} and {len(worse)} worse{_names(worse)}; the rest show no "
                     "detectable difference at alpha = 0.05 with this many seeds.")
        mde = tested["mde"].dropna()
        if len(mde):
            need = [int(v) for v in tested["seeds_needed"] if v is not None and v == v]
            parts.append(f"What this design could detect: with {_n_text(tested)} seed(s) the minimum detectable effect "
                         f"at 80% power is {mde.min():.2f} to {mde.max():.2f} pp at alpha 0.05 "
                         f"({tested['mde_holm'].min():.2f} to {tested['mde_holm'].max():.2f} pp at Holm's first "
                         f"step); detecting {collected.study.min_effect_pp:g} pp would need "
                         + (f"{min(need)} to {max(need)} seeds per arm." if need else "more than 1000 seeds per arm.")
                         + " A \"no detectable difference\" smaller than the MDE says nothing either way.")
    attn = arm_rows[~arm_rows["is_baseline"]]
    lat, mac = attn["latency_overhead_pct"].dropna(), attn["macs_full_vs_none_pct"].dropna()
    if len(lat) and len(mac):
        parts.append(f"Across attention arms, the median latency overhead at the smallest batch is "
                     f"{lat.median():+.1f}% "
                     f"against a median MAC overhead of {mac.median():+.1f}% (full policy) and "
                     f"{attn['macs_fvcore_default_vs_none_pct'].median():+.1f}% (fvcore default).")
    noisy = attn[[_covers_zero(r) for _, r in attn.iterrows()]]
    if len(noisy):
        parts.append(f"{len(noisy)} arm(s) are within timing noise of their baseline at the smallest batch (the "
                     f"overhead's 95% CI covers zero){_names(noisy)}.")
    warned = attn[attn["timing_warnings"].map(len) > 0]
    if len(warned):
        parts.append(f"WARNING: {len(warned)} arm(s) that do strictly more work than their baseline read faster "
                     f"beyond timing noise{_names(warned)}; their timings are not trustworthy (see Cost).")
    return " ".join(parts)


def _covers_zero(r: pd.Series) -> bool:
    low, high = r.get("latency_overhead_ci_low_pct"), r.get("latency_overhead_ci_high_pct")
    return bool(pd.notna(low) and pd.notna(high) and low <= 0 <= high)


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    if rev.returncode != 0:
        return "unknown (not a git checkout)"
    return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def timing_environment(collected: Collected) -> list[str]:
    """Where and under what each backbone's costs were timed: host, device, threads, precision, rounds, load."""
    lines = []
    for label, record in collected.timing.items():
        metrics = record.get("metrics") or {}
        if not metrics:
            continue
        first = next(iter(metrics.values()))["conditions"]
        loads = "; ".join(f"{name}: {m['conditions'].get('load_before')} -> {m['conditions'].get('load_after')}"
                          for name, m in metrics.items())
        device = str(record.get("device_name") or first.get("device"))
        lines.append(
            f"- costs of {escape(label)} timed on host {escape(record.get('host', '?'))}, {escape(device)}: "
            f"{first.get('threads')} thread(s), precision {first.get('precision')}, channels_last "
            f"{first.get('channels_last')}, {first.get('rounds')} interleaved rounds of {first.get('blocks')} "
            f"block(s) of ~{first.get('block_time')} s per arm"
            + (", CUDA graphs" if first.get("cuda_graph") else "") + f"; 1-min load average before -> after: {loads}"
        )
    return lines or ["- costs: not measured yet (profile phase)"]


def environment(collected: Collected) -> list[str]:
    runs = collected.runs
    devices = sorted({str(d) for d in runs["device"].dropna()}) if len(runs) else []
    lines = [f"- trained on: {', '.join(escape(d) for d in devices) or '-'}", *timing_environment(collected)]
    if len(runs) and runs["completed"].notna().any():
        lines.append(f"- final trials completed: {runs['completed'].min():%Y-%m-%d %H:%M} to "
                     f"{runs['completed'].max():%Y-%m-%d %H:%M}")
    cuda = torch.version.cuda or "none (CPU build)"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible"
    lines += [
        f"- report generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with ablate commit "
        f"{escape(_git_commit())}, Python {platform.python_version()}, torch {torch.__version__} (CUDA {cuda}; {gpu}), "
        f"on {escape(cpu_model())} ({escape(platform.platform())})",
    ]
    return lines


def _default_storage(collected: Collected) -> bool:
    study = collected.study
    return study.storage in (f"sqlite:///{study.run_dir / 'optuna.db'}", study.document.get("storage"))


def _shell(text: object) -> str:
    """A shell word for a fenced code block (where markdown escapes would show literally): one line, quoted."""
    return shlex.quote(" ".join(str(text).split()))


def reproduce(collected: Collected) -> str:
    path = _shell(collected.study.path)
    url = collected.study.storage  # a URL with a password is named through $ABLATE_STORAGE, never printed
    storage = "" if _default_storage(collected) else (
        f" --storage {_shell(url)}" if mask_url(url) == url else ' --storage "$ABLATE_STORAGE"')
    return "\n".join([
        "```sh",
        f"make study STUDY={path}     # or: .venv/bin/ablate run {path}{storage}  (resumes; --workers N in parallel)",
        f"make report STUDY={path}    # or: .venv/bin/ablate report {path}{storage}  (from storage, no retraining)",
        "```",
    ])


def completeness(collected: Collected, arm_rows: pd.DataFrame) -> list[str]:
    items = collected.items
    counts = items["status"].value_counts()
    lines = ["Runs (arm x seed): " + ", ".join(f"{int(counts.get(s, 0))} {s}"
                                               for s in ("complete", "running", "failed", "missing")) + "."]
    not_done = items[items["status"] != "complete"]
    if len(not_done):
        missing_arms = arm_rows[arm_rows["n"] == 0]["arm"].tolist()
        if missing_arms:
            lines.append(f"Arms with no result yet ({len(missing_arms)}): "
                         + ", ".join(map(escape, missing_arms)) + ".")
        shown = not_done.head(MAX_STATUS_ROWS).assign(trial=lambda d: d["trial"].map(
            lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else str(int(v))))
        lines.append("")
        lines.append(table(shown[["arm", "seed", "status", "trial", "reason"]].astype(str)))
        if len(not_done) > MAX_STATUS_ROWS:
            lines.append(f"\n... and {len(not_done) - MAX_STATUS_ROWS} more (tables/items.csv).")
    else:
        lines.append("Every arm x seed of the study file has a result.")
    prints = sorted({str(p) for p in collected.runs["spec_fingerprint"].dropna()})
    if prints and prints != [collected.study.fingerprint]:
        lines.append(f"\nNote: results come from study-file versions {', '.join(escape(p) for p in prints)}; the "
                     f"file now has fingerprint {escape(collected.study.fingerprint)} (it changed since some trials "
                     "ran).")
    if collected.extra_arms:
        lines.append(f"\nStorage also holds results of {len(collected.extra_arms)} arm(s) no longer in the study file; "
                     "they are not reported: " + ", ".join(map(escape, collected.extra_arms[:10])) + ".")
    return lines


def seed_plan_caveat(collected: Collected) -> list[str]:
    plan = collected.study.seed_plan
    if plan is None:
        return []
    return [f"- **Precision-targeted seeds.** Every arm got {plan.min} seeds; an arm (with its baseline, so the "
            f"comparison stays paired) got one more while the 95% CI half-width of its paired differences exceeded "
            f"{plan.target_ci_pp:g} pp, up to {plan.max}. The rule reads precision only, never a p-value, so adding "
            "seeds cannot steer a test towards significance."]


def determinism_caveat(collected: Collected) -> list[str]:
    """Arms whose training could not be deterministic (torch warned about an op), and the precisions used."""
    runs = collected.runs
    lines = []
    if len(runs) and "precision" in runs and runs["precision"].notna().any():
        used = ", ".join(sorted(str(p) for p in runs["precision"].dropna().unique()))
        lines.append(f"- **Training precision.** The final runs trained in {escape(used)} (the precision actually "
                     "used, after falling back from bf16 on GPUs that only emulate it).")
    if len(runs) and "nondeterministic_ops" in runs:
        bad = runs[runs["nondeterministic_ops"].fillna("") != ""]
        if len(bad):
            ops = sorted({op for v in bad["nondeterministic_ops"] for op in str(v).split(",") if op})
            lines.append(f"- **Not deterministic.** runtime.deterministic was on, but {len(set(bad['arm']))} arm(s) "
                         f"use ops with no deterministic implementation on this device ({escape(', '.join(ops))}): "
                         f"{escape(', '.join(sorted(set(bad['arm']))))}. Re-running them may not reproduce their "
                         "accuracies bit for bit.")
    return lines


def caveats(collected: Collected, arm_rows: pd.DataFrame) -> list[str]:
    n = sorted({int(v) for v in arm_rows["n"] if v > 0})
    tuning = collected.study.tuning
    try:
        test_count = dataset_info(collected.study.dataset).test_count
    except AblateError:
        test_count = None
    acc = arm_rows["acc_mean"].dropna()
    p = float(acc.mean()) / 100 if len(acc) else 0.9
    first, *policies = MAC_POLICY_TEXT.splitlines()
    lines = [
        "- **MAC counting policy.** " + escape(first),
        *(f"  - {escape(line.removeprefix('- '))}" for line in policies),
        f"- **Seeds.** {', '.join(map(str, n)) or 'no'} seed(s) per arm. The 95% CIs use Student's t with n-1 "
        "degrees of freedom; arm-vs-baseline tests are paired t-tests over seeds (Welch where seeds are not "
        "shared), Holm-corrected across all arms of the study. With few seeds they are wide (and not clipped to "
        "[0, 100]), and \"no detectable difference\" is not evidence of no difference: read it beside the MDE.",
        *seed_plan_caveat(collected),
        *determinism_caveat(collected),
        "- **Test data decides nothing.** The plateau schedule, pruning and time-to-target read the validation "
        "split only; the test split is evaluated every epoch and recorded, and the final number is the last "
        "epoch's test accuracy.",
    ]
    if test_count:
        se = 100 * math.sqrt(max(p * (1 - p), 1e-9) / test_count)
        lines.append(f"- **Test-set noise.** {test_count} test images: one image is {100 / test_count:.3g} pp, and "
                     f"the binomial standard error of an accuracy near {100 * p:.0f}% is about {se:.2f} pp.")
    lines += [
        "- **Hardware and timing.** All arms of a backbone are timed together, on one host, in interleaved rounds: "
        "after a warm-up of every arm, each round times every arm once (a few short torch.utils.benchmark blocks, "
        "CUDA events on GPU) in a fresh random order. An arm's time is the median over rounds (IQR over rounds "
        "beside it); its overhead is the median of its per-round ratios to the baseline timed in the same round, "
        "with a distribution-free 95% CI from binomial order statistics. Load that drifts between rounds cancels in "
        "the ratios; '~' marks an overhead whose CI covers zero (within timing noise). The training step "
        "(forward + backward + optimizer step at the recipe's batch size on a synthetic batch) is timed the same "
        "way; the final runs' seconds per epoch are wall-clock under whatever else ran on the host and are shown "
        "for reference only. Figures hold for the host, thread count, precision and batch size named above. "
        "Training time to the baseline's accuracy is measured per epoch (training only, evaluation excluded), so "
        "its resolution is one epoch.",
        f"- **Tuning.** scope {escape(tuning.scope)}"
        + (f", {tuning.n_trials} trials of {tuning.epochs} epoch(s) on the validation split; arms "
           "tuned by another group's optimum may be slightly disadvantaged." if tuning.enabled
           else ": tuning disabled, every arm uses the recipe's hyperparameters."),
    ]
    return lines


# ---------------------------------------------------------------- the document


def timing_warnings(arm_rows: pd.DataFrame) -> list[str]:
    """A warning paragraph per arm that does more work than its baseline but reads faster beyond noise."""
    texts = [w for ws in arm_rows["timing_warnings"] for w in ws]
    return [f"**Timing warning.** {escape(w)}." for w in texts] + ([""] if texts else [])


def render(collected: Collected, arm_rows: pd.DataFrame, sections: Sections, batch_sizes: Sequence[int]) -> str:
    study = collected.study
    out: list[str] = [f"# Ablation report: {escape(study.name)}", ""]
    if study.description:
        out += [f"> {escape(study.description)}", ""]
    out += ["## Summary", "", summary_paragraph(collected, arm_rows), ""]
    out += ["## Completeness", "", *completeness(collected, arm_rows), ""]
    out += ["## Environment", "", *environment(collected), ""]
    out += ["## Study", "",
            f"- study file: {escape(study.path)} (fingerprint {escape(study.fingerprint)})",
            f"- storage: {escape(mask_url(study.storage))}",
            f"- dataset: {escape(study.dataset.name)}, train_size {study.dataset.train_size or 'all'}, "
            f"test_size {study.dataset.test_size or 'all'}, "
            f"augmentation {escape(', '.join(study.dataset.augment) or 'none')}",
            f"- recipe: {escape(', '.join(f'{k}={v}' for k, v in study.recipe.as_dict().items()))}",
            f"- evaluation split of the final runs: {escape(collected.eval_split)}", ""]
    out += ["## How to reproduce", "", reproduce(collected), ""]
    out += ["## Results", "",
            "Test accuracy per arm over seeds (the last epoch's, never a best-of-epochs; the 95% CI's spread is "
            "floored by the test set's binomial noise). Δ is the difference from the same backbone's baseline with "
            "its 95% CI, from the test named in 'test': *paired* t over seeds (at one seed every arm of a backbone "
            "sees the same data order, augmentation draws and initial shared weights), Welch when fewer than two "
            "seeds are shared; p is that test's two-sided p-value after Holm correction across all arms. MDE is "
            "the minimum detectable effect at 80% power with this n and the observed spread, at alpha 0.05 and at "
            "Holm's first step (alpha / number of arms compared); 'seeds for' is how many seeds that test would "
            f"need to detect {collected.study.min_effect_pp:g} pp (study setting min_effect_pp). Costs: MACs % "
            "over the baseline, measured overheads with their CIs. Full numbers: [tables/arms.csv](tables/arms.csv).", "",
            table(sections.summary), ""]
    if not sections.images.empty:
        out += ["### Second view: the shared test images", "",
                "Per-seed noise (which run you got) and per-image noise (which images the test set happens to hold) "
                "are different things. Here the arm and its baseline are compared image by image on the same test "
                "set, pooled over the seeds both have: the accuracy difference with a paired bootstrap CI over "
                "images, and McNemar's exact test on the images only one of them gets right.", "",
                table(sections.images), ""]
    if not sections.provenance.empty:
        out += ["### Hyperparameters and time to the baseline's accuracy", "",
                "Where each arm's hyperparameters came from, and the epochs and training seconds (evaluation "
                "excluded) until its *validation* accuracy first reached the baseline's mean final validation "
                "accuracy: median over seeds, where a run that never got there counts as longer than it ran "
                "('>N': censored, never dropped).", "", table(sections.provenance), ""]
    out += ["### Cost", "",
            "Latency per batch size and the training step: median over interleaved rounds (IQR over rounds), and "
            "the overhead vs the baseline as the median per-round ratio with its 95% CI ('~': CI covers zero, within "
            "timing noise); MACs per image under both counting policies (see Caveats).", "", table(sections.costs), "",
            *timing_warnings(arm_rows)]
    out += ["## Figures", ""]
    for title, figs in sections.figures.items():
        if figs:
            out += [f"### {escape(title)}", ""] + [figure(f, heading=len(figs) > 1) for f in figs]
    out += ["## Factors", ""]
    if not sections.factors:
        out += ["The study varies no factor besides the attention type (see Results).", ""]
    for factor, pivot in sections.factors.items():
        out += [f"### {escape(factor)}", "",
                f"Mean test accuracy % (Δ vs baseline, pp) by {escape(factor)}, averaged over the arms that share "
                f"the level; numbers in [tables/factor_{factor}.csv](tables/factor_{factor}.csv).", "",
                table(pivot), ""]
        out += [figure(f) for f in sections.factor_figures.get(factor, [])]
    out += ["## Visual diagnostics", ""]
    if sections.diagnostic_arms:
        out += ["Arms shown (baseline and best arms, checkpoint of the lowest seed): "
                + ", ".join(map(escape, sections.diagnostic_arms)) + ".", ""]
    out += [figure(f) for f in sections.diagnostics]
    if not sections.diagnostics:
        out += ["No diagnostics in this report" + (" (see notes below)." if sections.notes else "."), ""]
    if sections.notes:
        out += ["## Notes", ""] + [f"- {escape(n)}" for n in sections.notes] + [""]
    out += ["## Caveats", "", *caveats(collected, arm_rows), ""]
    out += ["## Files", "", *[f"- [{escape(p)}]({p})" for p in sections.tables], ""]
    return "\n".join(out)


def dashboard_note(collected: Collected, arm_rows: pd.DataFrame, sections: Sections, report_path: str) -> str:
    """The final study's note in optuna-dashboard: the summary, the results table and one verdict per arm."""
    verdicts = []
    for backbone in dict.fromkeys(arm_rows["backbone"]):
        sub = arm_rows[(arm_rows["backbone"] == backbone) & (arm_rows["n"] > 0)]
        base_rows = sub[sub["is_baseline"]]
        base = base_rows.iloc[0] if not base_rows.empty else None
        verdicts += [f"- {_arm_sentence(r, base)}" for _, r in sub[~sub["is_baseline"]].iterrows()]
    out = [f"# {escape(collected.study.name)}", "", summary_paragraph(collected, arm_rows), "", "## Results", "",
           table(sections.summary), ""]
    if verdicts:
        out += ["## Verdicts", "", *verdicts, ""]
    out += [f"The full report (figures, costs, caveats) is `{escape(report_path)}`; its files are attached to this "
            "study as artifacts.", ""]
    return "\n".join(out)
