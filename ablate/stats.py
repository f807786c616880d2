"""Seed statistics: how sure are we that an arm differs from its baseline?

Each arm is trained with a handful of seeds, so every accuracy is a small sample. The report gives
its mean, sample standard deviation and a t-based 95% confidence interval, compares it with the
baseline's sample by Welch's t-test (no equal-variance assumption: attention can change the
seed-to-seed spread) and corrects the p-values for the number of arms compared (Holm), so that a
grid of twenty arms does not "find" an effect by chance. Small pure functions, checked against
scipy in tests/test_stats.py.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
BETTER, SAME, WORSE, UNTESTED = "better", "no detectable difference", "worse", "not testable"


@dataclass(frozen=True)
class Summary:
    """A sample's mean, sample std (ddof=1) and the t-based confidence interval of its mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class Comparison:
    """Arm minus baseline: the difference of means, its Welch CI, and the two-sided p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    return x[np.isfinite(x)]


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean +- t(n-1) * s / sqrt(n). With one value the spread is unknown (std and CI are NaN)."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch(arm: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Welch's two-sample t-test of mean(arm) - mean(baseline), with the Welch-Satterthwaite CI.

    Needs two values on each side; when both samples have zero spread the test is undefined and the
    p-value is NaN (the difference is still reported).
    """
    a, b = _clean(arm), _clean(baseline)
    if len(a) == 0 or len(b) == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, math.nan)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Comparison(diff, math.nan, math.nan, math.nan, math.nan)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    if se2 == 0:  # every seed identical on both sides: nothing to test against
        return Comparison(diff, math.nan, math.nan, math.nan, math.nan)
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(se2)
    with warnings.catch_warnings():  # near-identical samples (e.g. 100% every seed) warn; the value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    return Comparison(diff, diff - half, diff + half, p, float(df))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order.

    NaN entries (untestable comparisons) stay NaN and do not count towards the family size.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def verdict(diff: float, p_adjusted: float, alpha: float = ALPHA) -> str:
    """'better' / 'worse' when the Holm-adjusted p-value is below alpha, else no detectable difference."""
    if not (math.isfinite(diff) and math.isfinite(p_adjusted)):
        return UNTESTED
    if p_adjusted >= alpha:
        return SAME
    return BETTER if diff > 0 else WORSE


def pareto_front(cost: Sequence[float], value: Sequence[float]) -> list[bool]:
    """True for points no other point beats: lower-or-equal cost and higher-or-equal value, one strictly.

    NaN points are never on the front.
    """
    c, v = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    ok = np.isfinite(c) & np.isfinite(v)
    front = []
    for i in range(len(c)):
        if not ok[i]:
            front.append(False)
            continue
        dominated = ok & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        front.append(not bool(dominated.any()))
    return front
