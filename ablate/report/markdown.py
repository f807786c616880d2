"""report.md: GitHub markdown assembled from the tables, figures and notes, with user text escaped.

Anything that came from a user or from storage (arm ids, the study description, fail reasons,
group names) goes through `escape`, so a '|' cannot break a table and '<script>' or a backtick
cannot turn into markup. Every sentence with a number is computed here from the arm table.
"""

from __future__ import annotations

import datetime as dt
import json
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
from ..columns import MAC_POLICY_TEXT, overhead_text, within_noise
from ..datasets import dataset_info
from ..device import cpu_model
from ..errors import AblateError
from ..provenance import describe
from ..storage import mask_url
from .collect import Collected
from .output import Figure
from .tables import SMALL_BATCH, fmt

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
    images: pd.DataFrame = field(default_factory=pd.DataFrame)  # per-seed per-image tests (seed_view)
    provenance: pd.DataFrame = field(default_factory=pd.DataFrame)  # hyperparameter source, time to target
    factors: dict[str, pd.DataFrame] = field(default_factory=dict)  # factor -> pivot table
    factor_figures: dict[str, list[Figure]] = field(default_factory=dict)
    figures: dict[str, list[Figure]] = field(default_factory=dict)  # section title -> figures
    diagnostics: list[Figure] = field(default_factory=list)
    diagnostic_arms: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the report could not show, and why
    tables: list[str] = field(default_factory=list)  # CSV files written, relative to the report
    commit: str = "unknown"  # git_state(), read before the report wrote anything


# ---------------------------------------------------------------- the words


def _ci(low: object, high: object) -> str:
    return f" [{float(low):+.2f}, {float(high):+.2f}]" if pd.notna(low) and math.isfinite(float(low)) else ""


def _arm_sentence(r: pd.Series, base: pd.Series | None) -> str:
    spread = f" ± {fmt(r['acc_std'])}" if r["n"] > 1 else ""
    acc = f"{fmt(r['acc_mean'])}{spread}% (n={int(r['n'])})"
    if base is None or not math.isfinite(r["diff"]):
        return f"{escape(r['arm'])}, with {acc}"
    return (f"{escape(r['arm'])}, with {acc}: {r['diff']:+.2f} pp{_ci(r['diff_ci_low'], r['diff_ci_high'])} "
            f"(95% CI, seeds and test images) vs the baseline's {fmt(base['acc_mean'])}% ({escape(r['test'])} test, "
            f"Holm p = {fmt(r['p_holm'], '.3g')}: {r['verdict']}; MDE {fmt(r['mde'])} pp), at "
            f"{fmt(r['params_vs_none_pct'], '+.1f')}% parameters, {fmt(r['macs_full_vs_none_pct'], '+.1f')}% MACs "
            f"(full policy) and {overhead_text(*(r[c] for c in SMALL_BATCH[1:]))} latency (95% CI)")


def _span(values: pd.Series) -> str:
    """'1.20 to 2.04', or '1.20' when every value rounds the same."""
    low, high = f"{values.min():.2f}", f"{values.max():.2f}"
    return low if low == high else f"{low} to {high}"


def _n_text(values: pd.Series) -> str:
    ns = sorted({int(v) for v in values if pd.notna(v)})
    return "-" if not ns else (str(ns[0]) if len(ns) == 1 else f"{ns[0]} to {ns[-1]}")


def _names(arms: pd.DataFrame, limit: int = 5) -> str:
    """' (a, b, c ...)' for a non-empty frame of arms, else ''."""
    if arms.empty:
        return ""
    return " (" + ", ".join(escape(a) for a in arms["arm"].head(limit)) + (" ..." if len(arms) > limit else "") + ")"


def _with_diffs(arms: pd.DataFrame) -> str:
    """' (a: +1.10 pp [+0.3, +1.9], ...)' for a non-empty frame of compared arms, else ''."""
    if arms.empty:
        return ""
    return " (" + "; ".join(f"{escape(r['arm'])}: {r['diff']:+.2f} pp{_ci(r['diff_ci_low'], r['diff_ci_high'])}"
                            for _, r in arms.iterrows()) + ")"


def _backbone_findings(backbone: str, sub: pd.DataFrame, family: int) -> list[str]:
    """What the primary analysis says about one backbone, and where its robustness check disagrees."""
    base_rows = sub[sub["is_baseline"] & (sub["n"] > 0)]
    base = base_rows.iloc[0] if not base_rows.empty else None
    arms = sub[~sub["is_baseline"] & (sub["n"] > 0)]
    if base is None:
        why = "has no result yet" if sub["is_baseline"].any() else "is not in the grid (attention 'none')"
        return [f"On {escape(backbone)} the baseline {why}, so no arm is compared with it."]
    tested = arms[arms["p_holm"].notna()]
    if tested.empty:
        return [f"On {escape(backbone)} no arm can be compared with the baseline yet (fewer than two seeds)."]
    tests = ", ".join(sorted({escape(t) for t in tested["test"]}))
    better, worse = tested[tested["verdict"] == stats.BETTER], tested[tested["verdict"] == stats.WORSE]
    same = tested[tested["verdict"] == stats.SAME]
    parts = [f"On {escape(backbone)} (baseline {fmt(base['acc_mean'])}%, {_n_text(tested['n_pairs'])} shared seeds), "
             f"the primary analysis ({tests} test; seed and test-image noise; Holm across {family} comparisons) "
             f"finds {len(better)} arm(s) better than the baseline{_with_diffs(better)}, {len(worse)} worse"
             f"{_with_diffs(worse)} and no detectable difference for {len(same)}"
             + (f", whose MDE at alpha 0.05 is {_span(same['mde'])} pp." if same["mde"].notna().any() else ".")]
    top = tested.sort_values("diff", ascending=False).iloc[0]
    if len(tested) > 1:
        parts.append(f"The highest point estimate is {escape(top['arm'])} at {top['diff']:+.2f} pp"
                     f"{_ci(top['diff_ci_low'], top['diff_ci_high'])}; the top of {len(tested)} noisy estimates "
                     f"favours a lucky arm, so only its Holm-corrected test ({top['verdict']}) speaks for it.")
    disagree = tested[(tested["check_verdict"] != tested["verdict"]) & tested["check_p"].notna()
                      & tested["test"].str.startswith("blocked")]
    if tested["test"].str.startswith("blocked").any():
        parts.append("The per-arm paired check (each arm's own seed variance, n-1 df) "
                     + ("agrees with every verdict." if disagree.empty else
                        "disagrees for " + "; ".join(f"{escape(r['arm'])} (check: {r['check_verdict']})"
                                                     for _, r in disagree.iterrows()) + "."))
    spread = tested[tested["heterogeneous"].astype(bool)]
    if len(spread):
        parts.append("Seed spread differs beyond chance for " + "; ".join(
            f"{escape(r['arm'])} (its own variance {r['spread_ratio']:.1f}x the other arms')" for _, r in
            spread.iterrows()) + ": the blocked model assumes equal spreads, so for these arms the primary test is "
            "their own paired test.")
    return parts


def _seed_findings(tested: pd.DataFrame) -> str:
    """Per-seed McNemar results that the pooled-over-seeds view used to hide: opposite directions first."""
    both = tested[(tested["seeds_better"] != "") & (tested["seeds_worse"] != "")]
    if len(both):
        return ("Per seed, the same comparison goes both ways: " + "; ".join(
            f"{escape(r['arm'])}'s network is significantly better than the baseline's in seed(s) {r['seeds_better']} "
            f"and significantly worse in seed(s) {r['seeds_worse']}" for _, r in both.iterrows())
            + " (McNemar, p < 0.05 per seed). The effect changes from seed to seed beyond test-image noise, so "
            "these per-image tests say which trained networks differ, never whether an arm is better, and are "
            "not pooled over seeds.")
    one_way = tested[(tested["seeds_better"] != "") | (tested["seeds_worse"] != "")]
    if len(one_way):
        return ("Per seed, McNemar finds the arm's and the baseline's trained networks differ on these images for "
                + "; ".join(f"{escape(r['arm'])} (better in seed(s) {r['seeds_better'] or 'none'}, worse in "
                            f"{r['seeds_worse'] or 'none'})" for _, r in one_way.iterrows())
                + "; no arm goes both ways. That these networks differ does not make the arm better: only the "
                "primary analysis speaks for that.")
    if tested["n_pairs"].notna().any():
        return "Per seed, McNemar finds no pair of trained networks that differs on the test images at p < 0.05."
    return ""


def _power_sentence(tested: pd.DataFrame, family: int, min_effect: float) -> str:
    mde = tested["mde"].dropna()
    if mde.empty:
        return ""
    need = [int(v) for v in tested["seeds_needed"] if v is not None and v == v]
    unreachable = tested[~tested["min_effect_reachable"].astype(bool)]
    text = (f"What this design could detect: with {_n_text(tested['n_pairs'])} seed(s) the minimum detectable effect "
            f"at 80% power is {_span(mde)} pp at alpha 0.05 "
            f"({_span(tested['mde_holm'])} pp at Holm's first step, alpha/"
            f"{family}); detecting {min_effect:g} pp at that alpha would need "
            + (f"{min(need)} to {max(need)} seeds per arm" if need else "more than 1000 seeds per arm"))
    if len(unreachable):
        text += (f", and for {len(unreachable)} arm(s){_names(unreachable)} it is unreachable with this test set "
                 "(its image noise alone exceeds the target, whatever the number of seeds)")
    return text + ". A \"no detectable difference\" smaller than the MDE says nothing either way."


def summary_paragraph(collected: Collected, arm_rows: pd.DataFrame) -> str:
    """The key findings, every sentence computed from the arm table: completeness, the primary analysis's
    verdicts, its robustness check, per-seed disagreements, power, and costs."""
    items = collected.items
    done = int((items["status"] == "complete").sum())
    plan = collected.study.seed_plan
    seeds = (f"{plan.min} to {plan.max} seeds (precision-targeted)" if plan else f"{len(collected.study.seeds)} seeds")
    parts = [f"This study trains {len(arm_rows)} arms x {seeds} on {escape(collected.study.dataset.name)}; "
             f"{done} of {len(items)} runs are complete."]
    if done == 0:
        return " ".join(parts + ["No final results yet: the tables below hold costs only."])
    family = int(arm_rows["p"].notna().sum())
    for backbone in dict.fromkeys(arm_rows["backbone"]):
        parts += _backbone_findings(str(backbone), arm_rows[arm_rows["backbone"] == backbone], family)
    tested = arm_rows[~arm_rows["is_baseline"] & arm_rows["p_holm"].notna()]
    if len(tested):
        parts += [t for t in (_seed_findings(tested), _power_sentence(tested, family, collected.study.min_effect_pp))
                  if t]
    attn = arm_rows[~arm_rows["is_baseline"]]
    lat, mac = attn["latency_overhead_pct"].dropna(), attn["macs_full_vs_none_pct"].dropna()
    if len(lat) and len(mac):
        parts.append(f"Across attention arms, the median latency overhead at the smallest batch is "
                     f"{lat.median():+.1f}% "
                     f"against a median MAC overhead of {mac.median():+.1f}% (full policy) and "
                     f"{attn['macs_fvcore_default_vs_none_pct'].median():+.1f}% (fvcore default), timed on one host "
                     "(see Caveats: these CIs do not cover another machine).")
    noisy = attn[[within_noise(r.get("latency_overhead_ci_low_pct"), r.get("latency_overhead_ci_high_pct"))
                  for _, r in attn.iterrows()]]
    if len(noisy):
        parts.append(f"{len(noisy)} arm(s) are within timing noise of their baseline at the smallest batch (the "
                     f"overhead's 95% CI covers zero){_names(noisy)}.")
    warned = attn[attn["timing_warnings"].map(len) > 0]
    if len(warned):
        parts.append(f"WARNING: {len(warned)} arm(s) that do strictly more work than their baseline read faster "
                     f"beyond timing noise{_names(warned)}; their timings are not trustworthy (see Cost).")
    return " ".join(parts)


def git_state(exclude: Path | None = None, checkout: Path | None = None) -> str:
    """The ablate commit, and whether the checkout has uncommitted changes outside `exclude` (the report's
    own folder). Read before the report writes anything, so the report never dirties its own stamp."""
    here = checkout or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        top = Path(subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True,
                                  text=True, timeout=10).stdout.strip() or here)
        inside = exclude is not None and exclude.resolve().is_relative_to(top.resolve())
        spec = ["--", "."] + ([f":(exclude){exclude.resolve().relative_to(top.resolve())}"] if inside else [])
        dirty = subprocess.run(["git", "-C", str(top), "status", "--porcelain", "--untracked-files=no", *spec],
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


def run_environments(runs: pd.DataFrame) -> list[str]:
    """Which environment (CPU, threads, package versions) made which runs: bit-identical reruns need the same."""
    if not len(runs) or "environment" not in runs:
        return []
    records = [json.loads(text) for text in runs["environment"]]
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(record.get("id", "unrecorded"), []).append(i)
    if len(groups) == 1 and "unrecorded" not in groups:
        return [f"- every run's environment (id {escape(next(iter(groups)))}): {escape(describe(records[0]))}; "
                "a rerun repeats these accuracies bit for bit only in the same environment"]
    lines = [f"- runs came from {len(groups)} environments, so they agree only statistically, not bit for bit:"]
    for env_id, rows in groups.items():
        arms = ", ".join(f"{runs['arm'].iloc[i]} seed {runs['seed'].iloc[i]}" for i in rows[:6])
        more = f" and {len(rows) - 6} more" if len(rows) > 6 else ""
        what = describe(records[rows[0]]) if env_id != "unrecorded" else "not recorded (an older ablate)"
        lines.append(f"  - {escape(env_id)}: {escape(what)}: {len(rows)} run(s) ({escape(arms)}{more})")
    return lines


def environment(collected: Collected, commit: str) -> list[str]:
    runs = collected.runs
    devices = sorted({str(d) for d in runs["device"].dropna()}) if len(runs) else []
    lines = [f"- trained on: {', '.join(escape(d) for d in devices) or '-'}", *run_environments(runs),
             *timing_environment(collected)]
    if len(runs) and runs["completed"].notna().any():
        lines.append(f"- final trials completed: {runs['completed'].min():%Y-%m-%d %H:%M} to "
                     f"{runs['completed'].max():%Y-%m-%d %H:%M}")
    cuda = torch.version.cuda or "none (CPU build)"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible"
    lines += [
        f"- report generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with ablate commit "
        f"{escape(commit)}, Python {platform.python_version()}, torch {torch.__version__} (CUDA {cuda}; {gpu}), "
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


STATISTICS_CAVEATS = (
    "- **Two sources of noise.** Every accuracy and Δ interval carries what a rerun with new seeds would change "
    "(training randomness) and what a new test set of the same size would change (which images it holds), as "
    "variance components of the crossed seed x image design: Var(mean) = s_seed²/n + s_image²/m + "
    "s_residual²/(n m), estimated from the two-way ANOVA mean squares, the image part truncated at zero, with "
    "Satterthwaite's degrees of freedom. Assumes additive crossed components, with seeds and test images "
    "exchangeable draws from their populations. Where per-image correctness is not stored, an accuracy's image "
    "part is the binomial bound p(1-p)/m and a Δ's is left out (the test column says 'seeds only').",
    "- **Primary test.** Arms of a backbone trained on the same seeds are compared with the baseline in a "
    "blocked model (accuracy = arm + seed + residual) whose residual variance is pooled over all the backbone's "
    "arms, (k-1)(n-1) degrees of freedom instead of n-1 per arm; the seed part of a Δ's variance is "
    "2 x residual / n. Assumes normal seed effects and equal residual variance across arms (homoscedastic). "
    "tests/test_coverage.py checks by simulation that its 95% intervals cover the true effect 93-97% of the time "
    "under these assumptions. An arm whose own seed spread is much larger would get too narrow a blocked "
    "interval: a one-sided F check of its paired variance against the other arms' pooled one (approximate, and "
    "weak with few seeds) flags it, and its primary test is then its own paired test ('paired (unequal "
    "spread)'). The paired check column (each arm's own variance, n-1 df, plus the same image part) is valid "
    "without the equal-spread assumption but has few degrees of freedom. 'paired' in the test column: no block "
    "could be formed; 'welch': seeds are not shared.",
    "- **Multiplicity.** Holm's step-down correction over all comparisons of the study controls the family-wise "
    "error rate at 5% under any dependence between them; the verdict is the primary test's Holm-adjusted p < 0.05. "
    "The paired check has its own Holm family.",
    "- **Per-image tests, per seed only.** McNemar's exact test and the image bootstrap compare one seed's pair of "
    "trained networks on the shared test images: they say whether these two networks differ on these images "
    "(unadjusted p), not whether the arm beats its baseline. Pooling them over seeds would treat seeds x images as "
    "independent and ignore the seed-to-seed spread of the effect, so they are never pooled and never a verdict.",
    "- **Power.** The MDE is the effect the primary test detects with 80% power (noncentral t from its SE and "
    "df, the df taken as fixed), at alpha 0.05 and at Holm's first step (alpha / number of comparisons). "
    "'Seeds for' uses Holm's first-step alpha and keeps the image part, which more seeds do not shrink: a "
    "target below it is unreachable with this test set. \"No detectable difference\" is not evidence of no "
    "difference: read it beside the MDE.",
)


def _test_set_caveat(collected: Collected, arm_rows: pd.DataFrame) -> list[str]:
    try:
        test_count = dataset_info(collected.study.dataset).test_count
    except AblateError:
        return []
    acc = arm_rows["acc_mean"].dropna()
    p = float(acc.mean()) if len(acc) else 90.0
    return [f"- **Test-set size.** {test_count} test images: one image is {100 / test_count:.3g} pp, and the "
            f"binomial standard error of one accuracy near {p:.0f}% is {stats.binomial_sd_pp(p, test_count):.2f} pp "
            "(an upper bound of its image part)."]


def _when_tested(collected: Collected) -> str:
    """When the final runs evaluated the test split, read off their curves (not the study file)."""
    curves = collected.curves
    if len(curves) and curves["test_acc"].isna().any():
        return "evaluated once per run, after its last epoch (runtime.test_every_epoch off)"
    return "evaluated every epoch and recorded"


def caveats(collected: Collected, arm_rows: pd.DataFrame) -> list[str]:
    n = sorted({int(v) for v in arm_rows["n"] if v > 0})
    tuning = collected.study.tuning
    first, *policies = MAC_POLICY_TEXT.splitlines()
    lines = [
        "- **MAC counting policy.** " + escape(first),
        *(f"  - {escape(line.removeprefix('- '))}" for line in policies),
        f"- **Seeds.** {', '.join(map(str, n)) or 'no'} seed(s) per arm; with few seeds every interval is wide "
        "(and not clipped to [0, 100]).",
        *STATISTICS_CAVEATS,
        *_test_set_caveat(collected, arm_rows),
        *seed_plan_caveat(collected),
        *determinism_caveat(collected),
        "- **Test data decides nothing.** The plateau schedule, pruning and time-to-target read the validation "
        "split only; the test split is " + _when_tested(collected) + ", and the final number is the last epoch's "
        "test accuracy.",
        "- **Hardware and timing.** All arms of a backbone are timed together, on one host, in interleaved rounds: "
        "after a warm-up of every arm, each round times every arm once (a few short timed blocks: a perf_counter span "
        "on CPU, CUDA events on GPU) in a fresh random order. An arm's time is the median over rounds (IQR over rounds "
        "beside it); its overhead is the median of its per-round ratios to the baseline timed in the same round, "
        "with a distribution-free 95% CI from binomial order statistics. Load that drifts between rounds cancels in "
        "the ratios; '~' marks an overhead whose CI covers zero (within timing noise). These CIs cover the "
        "round-to-round noise within one timing session on one host, not another machine, CPU model, thread count "
        "or software build: overheads can move by far more than their CI between machines. The training step "
        "(forward + backward + optimizer step at the recipe's batch size on a synthetic batch) is timed the same "
        "way; the final runs' seconds per epoch are wall-clock under whatever else ran on the host and are shown "
        "for reference only. Training time to the baseline's accuracy is measured per epoch (training only, "
        "evaluation excluded), so its resolution is one epoch.",
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


def recipe_lines(collected: Collected) -> list[str]:
    """The hyperparameters the final runs actually trained with (tuned values per arm where they differ),
    or the study file's recipe, labelled so, before any final run exists."""
    study_recipe = collected.study.recipe.as_dict()
    used: dict[str, dict[str, list[str]]] = {}  # key -> value text -> arms
    for arm, g in collected.runs.groupby("arm", sort=False) if "recipe" in collected.runs else ():
        for text in g["recipe"].dropna():
            recipe = json.loads(text) if text else {}
            for key in study_recipe:
                if key in recipe:
                    arms = used.setdefault(key, {}).setdefault(_value(recipe[key]), [])
                    arms.append(str(arm)) if str(arm) not in arms else None
    if not used:
        return [f"- recipe (the study file's; no final run recorded its own yet): "
                f"{escape(', '.join(f'{k}={_value(v)}' for k, v in study_recipe.items()))}"]
    same = [f"{k}={next(iter(v))}" for k, v in used.items() if len(v) == 1]
    lines = [f"- recipe the final runs trained with: {escape(', '.join(same))}"]
    for key, values in used.items():
        if len(values) > 1:
            lines.append(f"- {escape(key)} (differs between arms: tuned): " + "; ".join(
                f"{escape(v)} ({', '.join(escape(a) for a in arms)})" for v, arms in values.items()))
    return lines


def _value(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def results(collected: Collected, sections: Sections) -> list[str]:
    """The Results legend and the headline table (also the README excerpt's table)."""
    min_effect = collected.study.min_effect_pp
    return [
        "Test accuracy per arm over seeds (the last epoch's, never a best-of-epochs), with a 95% CI that carries "
        "both seed noise and test-image noise (see Caveats). Δ is the difference from the same backbone's "
        "baseline with its 95% CI from the primary test named in 'test': *blocked* (every arm of a backbone "
        "trained on the same seeds sees the same data order, augmentation draws and initial shared weights; the "
        "seed noise is pooled over the backbone's arms) plus the test-image variance component; p (Holm) is its "
        "two-sided p-value after Holm's correction across all comparisons, and the verdict is Holm p < 0.05. The "
        "paired check is each arm's own paired test (its own seed variance, n-1 df, same image component), with "
        "its own Holm correction: a note marks where it disagrees or where the arm's own seed spread exceeds the "
        "other arms' beyond chance. MDE is the effect the primary test detects with 80% power, at alpha 0.05 and "
        "at Holm's first step (alpha / number of comparisons); 'seeds for' is how many seeds it would need to "
        f"detect {min_effect:g} pp (study setting min_effect_pp) at Holm's first-step alpha. Costs: MACs % over "
        "the baseline, measured overheads with their CIs (one timing session on one host). Full numbers: "
        "[tables/arms.csv](tables/arms.csv).", "",
        table(sections.summary), ""]


def excerpt(collected: Collected, arm_rows: pd.DataFrame, sections: Sections) -> str:
    """excerpt.md: the summary and the headline table, generated from the run, for a README to quote verbatim."""
    return "\n".join([summary_paragraph(collected, arm_rows), "", table(sections.summary), "",
                      f"_Generated by `ablate report {escape(collected.study.path)}` from the study's storage; "
                      "legend, caveats and costs in the full report._", ""])


def render(collected: Collected, arm_rows: pd.DataFrame, sections: Sections, batch_sizes: Sequence[int]) -> str:
    study = collected.study
    out: list[str] = [f"# Ablation report: {escape(study.name)}", ""]
    if study.description:
        out += [f"> {escape(study.description)}", ""]
    out += ["## Summary", "", summary_paragraph(collected, arm_rows), ""]
    out += ["## Completeness", "", *completeness(collected, arm_rows), ""]
    out += ["## Environment", "", *environment(collected, sections.commit), ""]
    out += ["## Study", "",
            f"- study file: {escape(study.path)} (fingerprint {escape(study.fingerprint)})",
            f"- storage: {escape(mask_url(study.storage))}",
            f"- dataset: {escape(study.dataset.name)}, train_size {study.dataset.train_size or 'all'}, "
            f"test_size {study.dataset.test_size or 'all'}, "
            f"augmentation {escape(', '.join(study.dataset.augment) or 'none')}",
            *recipe_lines(collected),
            f"- evaluation split of the final runs: {escape(collected.eval_split)}", ""]
    out += ["## How to reproduce", "", reproduce(collected), ""]
    out += ["## Results", "", *results(collected, sections)]
    if not sections.images.empty:
        out += ["### Per seed: do these two trained networks differ?", "",
                "One row per arm and seed: the arm's and the baseline's networks of that seed compared image by "
                "image on the shared test set (accuracy difference with a bootstrap CI over images, McNemar's exact "
                "test on the images only one of them gets right). This answers whether *these two trained networks* "
                "differ on *these images*; it is not pooled over seeds and is never a verdict (the seed-to-seed "
                "spread of the effect, which the primary analysis carries, is what decides). p is unadjusted. Full "
                "numbers: [tables/per\\_seed.csv](tables/per_seed.csv).", "",
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
        out += ["Arms shown (every finished arm; a larger study shows a subset chosen without looking at results, "
                "named in "
                "the Grad-CAM caption and the notes; checkpoint of the lowest seed): "
                + ", ".join(map(escape, sections.diagnostic_arms)) + ".", ""]
    out += [figure(f) for f in sections.diagnostics]
    if not sections.diagnostics:
        out += ["No diagnostics in this report" + (" (see notes below)." if sections.notes else "."), ""]
    if sections.notes:
        out += ["## Notes", ""] + [f"- {escape(n)}" for n in sections.notes] + [""]
    out += ["## Caveats", "", *caveats(collected, arm_rows), ""]
    out += ["## Files", "", *[f"- [{escape(p)}]({p})" for p in [*sections.tables, "excerpt.md"]], ""]
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
