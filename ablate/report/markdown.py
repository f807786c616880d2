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
from ..data import dataset_info
from ..errors import AblateError
from ..measure import MAC_POLICY_TEXT
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
            f"{fmt(base['acc_mean'])}% (Holm p = {fmt(r['p_holm'], '.3g')}: {r['verdict']}), at "
            f"{fmt(r['params_vs_none_pct'], '+.1f')}% parameters, {fmt(r['macs_full_vs_none_pct'], '+.1f')}% MACs "
            f"(full policy) and {fmt(r['latency_vs_none_pct'], '+.1f')}% latency")


def _names(arms: pd.DataFrame, limit: int = 5) -> str:
    """' (a, b, c ...)' for a non-empty frame of arms, else ''."""
    if arms.empty:
        return ""
    return " (" + ", ".join(escape(a) for a in arms["arm"].head(limit)) + (" ..." if len(arms) > limit else "") + ")"


def summary_paragraph(c: Collected, t: pd.DataFrame) -> str:
    """The key findings, computed from the arm table: completeness, best arm, significance, cost."""
    items = c.items
    done = int((items["status"] == "complete").sum())
    parts = [f"This study trains {len(t)} arms x {len(c.study.seeds)} seeds on {escape(c.study.dataset.name)}; "
             f"{done} of {len(items)} runs are complete."]
    if done == 0:
        return " ".join(parts + ["No final results yet: the tables below hold costs only."])
    for backbone in dict.fromkeys(t["backbone"]):
        sub = t[(t["backbone"] == backbone) & (t["n"] > 0)]
        base_rows = sub[sub["is_baseline"]]
        base = base_rows.iloc[0] if not base_rows.empty else None
        arms = sub[~sub["is_baseline"]].sort_values("acc_mean", ascending=False)
        if base is None:
            has_baseline = bool(t[(t["backbone"] == backbone) & t["is_baseline"]].shape[0])
            why = "has no result yet" if has_baseline else "is not in the grid (attention 'none')"
            parts.append(f"On {escape(backbone)} the baseline {why}, so no arm is compared with it.")
        if arms.empty:
            continue
        parts.append(f"On {escape(backbone)}, the most accurate attention arm is {_arm_sentence(arms.iloc[0], base)}.")
    tested = t[~t["is_baseline"] & t["p_holm"].notna()]
    better, worse = tested[tested["verdict"] == stats.BETTER], tested[tested["verdict"] == stats.WORSE]
    if len(tested):
        parts.append(f"After Holm correction across {len(tested)} comparisons, {len(better)} arm(s) are better than "
                     f"their baseline{_names(better)} and {len(worse)} worse{_names(worse)}; the rest show no "
                     "detectable difference at alpha = 0.05 with this many seeds.")
    attn = t[~t["is_baseline"]]
    lat, mac = attn["latency_vs_none_pct"].dropna(), attn["macs_full_vs_none_pct"].dropna()
    if len(lat) and len(mac):
        parts.append(f"Across attention arms, the median latency overhead at the smallest batch is "
                     f"{lat.median():+.1f}% "
                     f"against a median MAC overhead of {mac.median():+.1f}% (full policy) and "
                     f"{attn['macs_fvcore_default_vs_none_pct'].median():+.1f}% (fvcore default).")
    return " ".join(parts)


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


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            models = (line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
            return next(models, platform.machine())
    except OSError:
        return platform.processor() or platform.machine()


def environment(c: Collected) -> list[str]:
    runs, arms = c.runs, c.arms
    devices = sorted({str(d) for d in runs["device"].dropna()}) if len(runs) else []
    cost_devices = sorted({str(d) for d in arms.get("device_name", pd.Series(dtype=object)).dropna()})
    lines = [
        f"- trained on: {', '.join(escape(d) for d in devices) or '-'}",
        f"- costs measured on: {', '.join(escape(d) for d in cost_devices) or '-'}"
        + (f" (threads {', '.join(sorted({str(v) for v in arms['threads'].dropna()}))}, "
           f"amp {', '.join(sorted({str(v) for v in arms['amp'].dropna()}))}, "
           f"channels_last {', '.join(sorted({str(v) for v in arms['channels_last'].dropna()}))})"
           if "threads" in arms and arms["threads"].notna().any() else ""),
    ]
    if len(runs) and runs["completed"].notna().any():
        lines.append(f"- final trials completed: {runs['completed'].min():%Y-%m-%d %H:%M} to "
                     f"{runs['completed'].max():%Y-%m-%d %H:%M}")
    cuda = torch.version.cuda or "none (CPU build)"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible"
    lines += [
        f"- report generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with ablate commit "
        f"{escape(_git_commit())}, Python {platform.python_version()}, torch {torch.__version__} (CUDA {cuda}; {gpu}), "
        f"on {escape(_cpu_model())} ({escape(platform.platform())})",
    ]
    return lines


def _default_storage(c: Collected) -> bool:
    study = c.study
    return study.storage in (f"sqlite:///{study.run_dir / 'optuna.db'}", study.document.get("storage"))


def _shell(text: object) -> str:
    """A shell word for a fenced code block (where markdown escapes would show literally): one line, quoted."""
    return shlex.quote(" ".join(str(text).split()))


def reproduce(c: Collected) -> str:
    path = _shell(c.study.path)
    storage = "" if _default_storage(c) else f" --storage {_shell(mask_url(c.study.storage))}"
    return "\n".join([
        "```sh",
        f"make study STUDY={path}     # or: .venv/bin/ablate run {path}{storage}  (resumes; --workers N in parallel)",
        f"make report STUDY={path}    # or: .venv/bin/ablate report {path}{storage}  (from storage, no retraining)",
        "```",
    ])


def completeness(c: Collected, t: pd.DataFrame) -> list[str]:
    items = c.items
    counts = items["status"].value_counts()
    lines = ["Runs (arm x seed): " + ", ".join(f"{int(counts.get(s, 0))} {s}"
                                               for s in ("complete", "running", "failed", "missing")) + "."]
    not_done = items[items["status"] != "complete"]
    if len(not_done):
        missing_arms = t[t["n"] == 0]["arm"].tolist()
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
    prints = sorted({str(p) for p in c.runs["spec_fingerprint"].dropna()})
    if prints and prints != [c.study.fingerprint]:
        lines.append(f"\nNote: results come from study-file versions {', '.join(escape(p) for p in prints)}; the "
                     f"file now has fingerprint {escape(c.study.fingerprint)} (it changed since some trials ran).")
    if c.extra_arms:
        lines.append(f"\nStorage also holds results of {len(c.extra_arms)} arm(s) no longer in the study file; "
                     "they are not reported: " + ", ".join(map(escape, c.extra_arms[:10])) + ".")
    return lines


def caveats(c: Collected, t: pd.DataFrame) -> list[str]:
    n = sorted({int(v) for v in t["n"] if v > 0})
    try:
        test_count = dataset_info(c.study.dataset).test_count
    except AblateError:
        test_count = None
    acc = t["acc_mean"].dropna()
    p = float(acc.mean()) / 100 if len(acc) else 0.9
    first, *policies = MAC_POLICY_TEXT.splitlines()
    lines = [
        "- **MAC counting policy.** " + escape(first),
        *(f"  - {escape(line.removeprefix('- '))}" for line in policies),
        f"- **Seeds.** {', '.join(map(str, n)) or 'no'} seed(s) per arm. The 95% CIs use Student's t with n-1 "
        "degrees of freedom and the arm-vs-baseline tests are Welch's t-tests, Holm-corrected across all arms "
        "of the study; with few seeds they are wide (and not clipped to [0, 100]), and \"no detectable "
        "difference\" is not evidence of no difference.",
    ]
    if test_count:
        se = 100 * math.sqrt(max(p * (1 - p), 1e-9) / test_count)
        lines.append(f"- **Test-set noise.** {test_count} test images: one image is {100 / test_count:.3g} pp, and "
                     f"the binomial standard error of an accuracy near {100 * p:.0f}% is about {se:.2f} pp.")
    lines += [
        "- **Hardware and timing.** Latency and throughput are medians over timed blocks on the device named "
        "above, after warm-up, with the IQR beside them; they hold for that device, thread count and batch size "
        "only, and a shared or busy machine adds noise. Training time to the baseline's accuracy is measured "
        "per epoch (training only, evaluation excluded), so its resolution is one epoch.",
        f"- **Tuning.** scope {escape(c.study.tuning.scope)}"
        + (f", {c.study.tuning.n_trials} trials of {c.study.tuning.epochs} epoch(s) on the validation split; arms "
           "tuned by another group's optimum may be slightly disadvantaged." if c.study.tuning.enabled
           else ": tuning disabled, every arm uses the recipe's hyperparameters."),
    ]
    return lines


# ---------------------------------------------------------------- the document


def render(c: Collected, t: pd.DataFrame, s: Sections, batch_sizes: Sequence[int]) -> str:
    study = c.study
    out: list[str] = [f"# Ablation report: {escape(study.name)}", ""]
    if study.description:
        out += [f"> {escape(study.description)}", ""]
    out += ["## Summary", "", summary_paragraph(c, t), ""]
    out += ["## Completeness", "", *completeness(c, t), ""]
    out += ["## Environment", "", *environment(c), ""]
    out += ["## Study", "",
            f"- study file: {escape(study.path)} (fingerprint {escape(study.fingerprint)})",
            f"- storage: {escape(mask_url(study.storage))}",
            f"- dataset: {escape(study.dataset.name)}, train_size {study.dataset.train_size or 'all'}, "
            f"test_size {study.dataset.test_size or 'all'}, "
            f"augmentation {escape(', '.join(study.dataset.augment) or 'none')}",
            f"- recipe: {escape(', '.join(f'{k}={v}' for k, v in study.recipe.as_dict().items()))}",
            f"- evaluation split of the final runs: {escape(c.eval_split)}", ""]
    out += ["## How to reproduce", "", reproduce(c), ""]
    out += ["## Results", "",
            "Test accuracy per arm over seeds; Δ is the difference from the same backbone's baseline with its Welch "
            "95% CI; p is Welch's two-sided p-value after Holm correction across all arms. Costs are % over the "
            "baseline. Full numbers: [tables/arms.csv](tables/arms.csv).", "",
            table(s.summary), "", "### Cost", "",
            f"Latency at batch {min(batch_sizes) if batch_sizes else '-'} and throughput at batch "
            f"{max(batch_sizes) if batch_sizes else '-'} (median ± IQR); MACs per image under both counting "
            "policies (see Caveats).", "", table(s.costs), ""]
    out += ["## Figures", ""]
    for title, figs in s.figures.items():
        if figs:
            out += [f"### {escape(title)}", ""] + [figure(f, heading=len(figs) > 1) for f in figs]
    out += ["## Factors", ""]
    if not s.factors:
        out += ["The study varies no factor besides the attention type (see Results).", ""]
    for factor, pivot in s.factors.items():
        out += [f"### {escape(factor)}", "",
                f"Mean test accuracy % (Δ vs baseline, pp) by {escape(factor)}, averaged over the arms that share "
                f"the level; numbers in [tables/factor_{factor}.csv](tables/factor_{factor}.csv).", "",
                table(pivot), ""]
        out += [figure(f) for f in s.factor_figures.get(factor, [])]
    out += ["## Visual diagnostics", ""]
    if s.diagnostic_arms:
        out += ["Arms shown (baseline and best arms, checkpoint of the lowest seed): "
                + ", ".join(map(escape, s.diagnostic_arms)) + ".", ""]
    out += [figure(f) for f in s.diagnostics]
    if not s.diagnostics:
        out += ["No diagnostics in this report" + (" (see notes below)." if s.notes else "."), ""]
    if s.notes:
        out += ["## Notes", ""] + [f"- {escape(n)}" for n in s.notes] + [""]
    out += ["## Caveats", "", *caveats(c, t), ""]
    out += ["## Files", "", *[f"- [{escape(p)}]({p})" for p in s.tables], ""]
    return "\n".join(out)
