"""The statistics of interleaved timing rounds: orders, per-round ratios, medians and their CIs. Pure Python.

Every figure the timing code reports comes from here, given one time per arm per round (see
`ablate.timing` for how the rounds are timed, and why). Nothing here reads a clock or touches torch:
`run_rounds` takes a `time_block(name) -> seconds` function, so tests drive it with a fake clock and
the report recomputes every figure from the stored per-round times.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from .errors import AblateError

CI_METHOD = ("distribution-free 95% CI of the median per-round ratio (binomial order statistics), widened to at "
             "least +-resolution x ratio (the run-to-run reproducibility of the method)")




def round_orders(names: Sequence[str], rounds: int, seed: int) -> list[list[str]]:
    """A fresh random order of `names` for every round, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [[names[i] for i in rng.permutation(len(names))] for _ in range(rounds)]


def run_rounds(names: Sequence[str], time_block: Callable[[str], float], rounds: int,
               seed: int = 0) -> dict[str, list[float]]:
    """Per name, one time per round: every round calls `time_block` once per name, in a fresh order."""
    if len(set(names)) != len(names) or not names:
        raise AblateError(f"interleaved timing needs distinct names, got {list(names)!r}.")
    times: dict[str, list[float]] = {n: [] for n in names}
    for order in round_orders(list(names), rounds, seed):
        for name in order:
            times[name].append(float(time_block(name)))
    return times


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage): the distribution-free CI for the median from order statistics.

    The interval [x_(k), x_(n-k+1)] covers the population median with probability
    1 - 2 P(Bin(n, 1/2) < k); k is the largest value with coverage >= `confidence`. With fewer than 6
    values no k reaches 95%: the interval is then [min, max] and its lower coverage is returned.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    best_k, coverage = 1, 1.0 - 2 * 0.5**n
    for k in range(1, n // 2 + 1):
        cover = 1.0 - 2.0 * float(sps.binom.cdf(k - 1, n, 0.5))
        if cover >= confidence:
            best_k, coverage = k, cover
        else:
            break
    return float(x[best_k - 1]), float(x[n - best_k]), coverage


def _iqr(values: Sequence[float]) -> float:
    q1, q3 = np.percentile(np.asarray(values, dtype=float), [25, 75])
    return float(q3 - q1)


@dataclass(frozen=True)
class RoundSummary:
    """One arm over the rounds: absolute time and its ratio to the baseline timed in the same rounds."""

    median_s: float  # median over rounds of the arm's time per call
    iqr_s: float  # IQR over rounds (the spread a user would see rerunning)
    ratio: float | None  # median per-round arm / baseline; None for the baseline itself
    ratio_ci_low: float | None
    ratio_ci_high: float | None
    coverage: float | None  # the CI's actual coverage (order statistics are discrete)
    times_s: list[float] = field(default_factory=list)  # per round
    ratios: list[float] = field(default_factory=list)  # per round

    @property
    def overhead_pct(self) -> float | None:
        return None if self.ratio is None else (self.ratio - 1) * 100

    @property
    def overhead_ci_pct(self) -> tuple[float, float] | None:
        if self.ratio_ci_low is None or self.ratio_ci_high is None:
            return None
        return (self.ratio_ci_low - 1) * 100, (self.ratio_ci_high - 1) * 100


def summarize_rounds(times: Mapping[str, Sequence[float]], baseline: str | None, confidence: float = 0.95,
                     resolution: float = 0.0) -> dict[str, RoundSummary]:
    """Per name: median and IQR over rounds, and the per-round ratio to `baseline` with its CI.

    The order-statistic CI covers the variation *within* one run. Two identical runs also differ by
    what stays fixed for a whole process (which core, memory layout, frequency): measured here at up
    to ~1.7% of the ratio between back-to-back runs of five arms on a shared 2-core VM. `resolution`
    widens every CI to at least +-resolution x ratio, so an interval never claims more than the
    method can repeat.
    """
    base = list(times[baseline]) if baseline is not None else None
    out: dict[str, RoundSummary] = {}
    for name, values in times.items():
        values = [float(v) for v in values]
        if base is None or name == baseline:
            out[name] = RoundSummary(statistics.median(values), _iqr(values), None, None, None, None, values, [])
            continue
        if len(base) != len(values):
            raise AblateError(f"{name!r} and the baseline were timed in different rounds ({len(values)} vs "
                              f"{len(base)}); per-round ratios need the same rounds.")
        ratios = [v / b for v, b in zip(values, base)]
        low, high, coverage = median_ci(ratios, confidence)
        mid = statistics.median(ratios)
        low, high = min(low, mid * (1 - resolution)), max(high, mid * (1 + resolution))
        out[name] = RoundSummary(statistics.median(values), _iqr(values), mid, low, high, coverage, values, ratios)
    return out


def faster_beyond_noise(summary: RoundSummary) -> bool:
    """True when the whole overhead CI lies below zero (the arm reads faster than its baseline)."""
    return summary.ratio_ci_high is not None and summary.ratio_ci_high < 1.0
