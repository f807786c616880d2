"""Seed statistics: how sure are we that an arm differs from its baseline?

Each arm is trained with a handful of seeds, so every accuracy is a small sample. The report gives
its mean, sample standard deviation and a t-based 95% confidence interval, compares it with the
baseline's sample by Welch's t-test (no equal-variance assumption: attention can change the
seed-to-seed spread) and corrects the p-values for the number of arms compared (Holm), so that a
grid of twenty arms does not "find" an effect by chance. Small pure functions, checked against
scipy in tests/test_stats.py.

When the arms share seeds (same data order, augmentation draws and shared-layer initial weights),
the seed-wise difference removes most of the seed noise, so `compare` runs a paired t-test on the
shared seeds and falls back to Welch only for unpaired data. A "no detectable difference" is only
honest beside what could have been detected: `mde` / `seeds_needed` give the minimum detectable
effect at 80% power (noncentral t; at Holm's first step use alpha / m, see `holm_first_alpha`).
Seed spreads from 2-3 seeds can be zero by chance; `binomial_sd_pp` / `floored_sd` and the
`floor_sd` keywords keep a CI from being narrower than the test set's own sampling noise. With
per-image correctness, `mcnemar` and `paired_bootstrap` test on the shared test images instead.
`needs_more_seeds` is a precision-only stopping rule (never a p-value rule).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize as spo
from scipy import stats as sps
from scipy.special import roots_jacobi

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
    """Arm minus baseline: the difference of means, its CI, the two-sided p-value and which test ran.

    `test` is "welch", "paired" or "paired_bootstrap" (a last field with a default, so the
    positional five-field constructor of older callers still builds a Welch comparison).
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float
    test: str = "welch"


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two classifiers on the same images (a = arm, b = baseline).

    b: images only the baseline gets right; c: images only the arm gets right; n: images;
    diff_pp = 100 * (c - b) / n = accuracy(arm) - accuracy(baseline) in percentage points.
    """

    b: int
    c: int
    n: int
    p_value: float
    diff_pp: float


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    return x[np.isfinite(x)]


def _floor(sd: float, floor_sd: float | None) -> float:
    """max(sd, floor_sd), with a NaN sd replaced by the floor; no floor -> sd unchanged."""
    if floor_sd is None or not math.isfinite(floor_sd):
        return sd
    return floor_sd if not math.isfinite(sd) else max(sd, floor_sd)


def summarize(values: Sequence[float], confidence: float = 0.95, *, floor_sd: float | None = None) -> Summary:
    """Mean +- t(n-1) * s / sqrt(n). With one value the spread is unknown (std and CI are NaN).

    floor_sd: when given, the CI uses max(s, floor_sd), because two seeds that happen to agree
    (e.g. 83.20, 83.20) do not make the mean exact; `std` stays the observed one.
    """
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    spread = _floor(std, floor_sd)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * spread / math.sqrt(n)
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
    if a.var(ddof=1) + b.var(ddof=1) == 0:  # every seed identical on both sides: nothing to test against
        return Comparison(diff, math.nan, math.nan, math.nan, math.nan)
    with warnings.catch_warnings():  # near-identical samples (e.g. 100% every seed) warn; the value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ttest_ind(a, b, equal_var=False)
        ci = result.confidence_interval(confidence)
    return Comparison(diff, float(ci.low), float(ci.high), float(result.pvalue), float(result.df))


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


# --- paired comparisons over seeds ----------------------------------------------------------------


def _t_half(sd: float, n: int, confidence: float) -> float:
    return float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)


def paired(
    arm: Sequence[float], baseline: Sequence[float], confidence: float = 0.95, *, floor_sd: float | None = None
) -> Comparison:
    """Paired t-test of arm - baseline over seeds (sequences aligned by seed; df = n - 1).

    Same-seed arms share data order, augmentation and shared-layer init, so the per-seed difference
    carries far less noise than either accuracy and the test is far more powerful than Welch. A pair
    with a missing/NaN side is dropped. One pair, or differences with zero spread, give the
    difference with a NaN p-value and CI (as `welch`), unless floor_sd is given: then the SD of the
    differences is max(sd, floor_sd) for both CI and p (t distribution, df = n - 1), so a lucky
    agreement of two seeds never reads as certainty. Without a floor, p is scipy's ttest_rel.
    A spread below 1e-9 of the accuracies' magnitude is float rounding of equal differences and
    counts as zero.
    """
    if len(arm) != len(baseline):
        raise ValueError(f"paired needs equal-length samples aligned by seed, got {len(arm)} and {len(baseline)}")
    a = np.asarray([math.nan if v is None else v for v in arm], dtype=float)
    b = np.asarray([math.nan if v is None else v for v in baseline], dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = len(a)
    if n == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, math.nan, "paired")
    d = a - b
    diff = float(d.mean())
    if n < 2:
        return Comparison(diff, math.nan, math.nan, math.nan, math.nan, "paired")
    sd = float(d.std(ddof=1))
    if sd <= 1e-9 * max(float(np.abs(a).max()), float(np.abs(b).max())):
        sd = 0.0  # e.g. 83.5-83.3 vs 83.2-83.0: rounding of equal deltas must not read as certainty
    spread = _floor(sd, floor_sd)
    if not spread > 0:  # every seed moved by exactly the same amount: nothing to test against
        return Comparison(diff, math.nan, math.nan, math.nan, float(n - 1), "paired")
    half = _t_half(spread, n, confidence)
    if spread == sd:
        with warnings.catch_warnings():  # near-zero spread warns about precision; the value is still right
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(sps.ttest_rel(a, b).pvalue)
    else:
        p = float(2 * sps.t.sf(abs(diff) / (spread / math.sqrt(n)), n - 1))
    return Comparison(diff, diff - half, diff + half, p, float(n - 1), "paired")


def compare(
    arm_by_seed: Mapping[int, float],
    base_by_seed: Mapping[int, float],
    confidence: float = 0.95,
    *,
    floor_sd: float | None = None,
) -> Comparison:
    """The primary arm-vs-baseline test: paired on shared seeds when there are >= 2, else Welch.

    Seeds only one side has (or with a NaN value) are left out of the paired test, because an
    unmatched seed carries the seed noise that pairing removes. With fewer than 2 shared seeds the
    data are unpaired and Welch runs on all finite values of each side. `test` on the result says
    which ran. floor_sd applies to the paired test only (the SD of per-seed differences).
    """

    def finite(v: float | None) -> bool:
        return v is not None and math.isfinite(v)

    common = arm_by_seed.keys() & base_by_seed.keys()
    shared = sorted(k for k in common if finite(arm_by_seed[k]) and finite(base_by_seed[k]))
    if len(shared) >= 2:
        arm, base = [arm_by_seed[k] for k in shared], [base_by_seed[k] for k in shared]
        return paired(arm, base, confidence, floor_sd=floor_sd)
    return welch(list(arm_by_seed.values()), list(base_by_seed.values()), confidence)


# --- power: what could have been detected ---------------------------------------------------------


def holm_first_alpha(alpha: float, m: int) -> float:
    """alpha / m: the level Holm's first (strictest) step tests at, for an MDE that survives Holm."""
    if m < 1:
        raise ValueError(f"family size m must be >= 1, got {m}")
    return alpha / m


def _df_nc(effect: float, sd: float, n: int, paired: bool) -> tuple[int, float]:
    if paired:
        return n - 1, effect * math.sqrt(n) / sd
    return 2 * n - 2, effect / (sd * math.sqrt(2 / n))


_WELCH_NODES = 48  # Gauss-Jacobi nodes over the variance split; exact to ~1e-15 against 200 nodes


def t_power(
    effect: float, sd: float, n: int, alpha: float = ALPHA, paired: bool = True, *, welch: bool = True
) -> float:
    """Power of the two-sided t-test to detect `effect`: P(|T| > t_crit), T noncentral t.

    paired=True: n pairs, sd = SD of the per-seed differences, T ~ nct(n - 1, effect sqrt(n) / sd).
    paired=False: two samples of n with common SD sd, T ~ nct(2n - 2, effect / (sd sqrt(2 / n))).
    With welch=False the critical value is Student's t(2n - 2). With welch=True (default, the
    test `compare` falls back to) it is t(df_W): for equal n the Welch statistic equals Student's,
    but its Welch-Satterthwaite df_W = (n - 1) / (U^2 + (1 - U)^2) depends on the share
    U = s1^2 / (s1^2 + s2^2) ~ Beta((n-1)/2, (n-1)/2), which is independent of T; the power is the
    exact average over U (Gauss-Jacobi quadrature). At n = 2, df_W lies in [1, 2], not 2, and the
    Welch MDE is about twice Student's: the Student formula would overstate what was detectable.
    """
    if n < 2:
        return math.nan
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    df, nc = _df_nc(abs(effect), sd, n, paired)
    if paired or not welch:
        crit = float(sps.t.ppf(1 - alpha / 2, df))
        # P(T < -crit | nc) = P(T > crit | -nc): scipy's nct.cdf far in the lower tail can return NaN
        return float(sps.nct.sf(crit, df, nc) + sps.nct.sf(crit, df, -nc))
    a = (n - 1) / 2 - 1  # Beta((n-1)/2, (n-1)/2) on U = (x + 1) / 2 is Jacobi weight (1-x)^a (1+x)^a
    x, w = roots_jacobi(_WELCH_NODES, a, a)
    u, w = (x + 1) / 2, w / w.sum()
    crit = sps.t.ppf(1 - alpha / 2, (n - 1) / (u**2 + (1 - u) ** 2))
    return float(np.sum(w * (sps.nct.sf(crit, df, nc) + sps.nct.sf(crit, df, -nc))))


def _check_power_args(sd: float, alpha: float, power: float) -> None:
    if not 0 < alpha < 1 or not alpha < power < 1:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")


def mde(
    sd: float, n: int, alpha: float = ALPHA, power: float = 0.8, paired: bool = True, *, welch: bool = True
) -> float:
    """Minimum detectable effect (units of sd) of the two-sided t-test at the given power.

    Printed beside every "no detectable difference", so a null result says how large an effect it
    could have missed. Solves t_power(delta) = power with brentq (see t_power for paired / welch).
    n < 2 -> inf; NaN sd -> NaN. At Holm's first step pass alpha = holm_first_alpha(alpha, m).
    """
    if n < 2:
        return math.inf
    if not math.isfinite(sd):
        return math.nan
    _check_power_args(sd, alpha, power)
    if sd == 0:
        return 0.0

    def gap(d: float) -> float:
        return t_power(d, sd, n, alpha, paired, welch=welch) - power

    hi = sd
    while gap(hi) < 0:
        hi *= 2
    return float(spo.brentq(gap, 0.0, hi, xtol=1e-12 * sd, rtol=1e-12))


def seeds_needed(
    sd: float,
    effect: float,
    alpha: float = ALPHA,
    power: float = 0.8,
    paired: bool = True,
    max_n: int = 1000,
    *,
    welch: bool = True,
) -> int | None:
    """Smallest n >= 2 (pairs, or seeds per arm when unpaired) whose power for `effect` reaches `power`.

    For planning: how many seeds a study needs before its null results mean anything. None when
    even max_n is not enough (or effect is 0). Power rises with n, so doubling + bisection suffices.
    """
    if not (math.isfinite(sd) and math.isfinite(effect)):
        return None
    _check_power_args(sd, alpha, power)
    tol = 1e-9  # mde() solves to ~1e-12; a round trip must land on the same n

    def enough(n: int) -> bool:
        return t_power(effect, sd, n, alpha, paired, welch=welch) >= power - tol

    if max_n < 2 or effect == 0 or not enough(max_n):
        return None
    lo, hi = 1, 2  # invariant: n = lo is not enough (n = 1 never is); n = hi is, once found
    while not enough(hi):
        lo, hi = hi, min(2 * hi, max_n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


# --- the test set's own sampling noise -------------------------------------------------------------


def binomial_sd_pp(acc_pct: float, n_images: int) -> float:
    """100 * sqrt(p (1 - p) / n), p = acc / 100: the SD (pp) of an accuracy measured on n images.

    The report's claims are about the data distribution, not these n images, so no seed-to-seed SD
    should be trusted below this. As a floor for the SD of per-seed *differences* of two arms on the
    same images it is a deliberately simple stand-in: the exact test-set noise of a difference is
    100 * sqrt((d - diff^2) / n) with d the fraction of images the two disagree on, and similar
    networks disagree on fewer than p (1 - p) of the images, so this floor is usually the larger
    (conservative: wider CIs). With per-image data use `mcnemar` / `paired_bootstrap` instead.
    """
    if n_images <= 0:
        raise ValueError(f"n_images must be > 0, got {n_images}")
    p = acc_pct / 100
    if not 0 <= p <= 1:
        raise ValueError(f"accuracy must be in [0, 100] %, got {acc_pct}")
    return 100 * math.sqrt(p * (1 - p) / n_images)


def floored_sd(observed_sd: float, acc_pct: float, n_images: int) -> float:
    """max(observed SD, binomial floor); a NaN observed SD (one seed) becomes the floor."""
    return _floor(observed_sd, binomial_sd_pp(acc_pct, n_images))


# --- per-image tests on a shared test set ----------------------------------------------------------


def _correct_pair(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(correct_a, dtype=bool).ravel(), np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"per-image arrays must align image by image, got {a.shape} and {b.shape}")
    return a, b


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact McNemar test: arm (a) vs baseline (b) correctness on the same images, image by image.

    Only discordant images carry information; under no difference each is equally likely to
    favour either side, so p is the exact two-sided binomial test of c out of b + c at 1/2 (1.0
    when no image is discordant). To pool several seeds, concatenate the per-seed arrays (seed k of
    the arm aligned with seed k of the baseline); that treats images x seeds as the sample.
    """
    a, b_ = _correct_pair(correct_a, correct_b)
    n = len(a)
    b, c = int(np.sum(~a & b_)), int(np.sum(a & ~b_))
    if n == 0:
        return McNemar(0, 0, 0, math.nan, math.nan)
    p = 1.0 if b + c == 0 else float(sps.binomtest(c, b + c, 0.5).pvalue)
    return McNemar(b, c, n, p, 100 * (c - b) / n)


def paired_bootstrap(
    correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Comparison:
    """Accuracy difference arm (a) - baseline (b) in pp with a percentile CI from resampling images.

    Images are resampled with replacement, the same images for both arms, so the shared difficulty
    of each image cancels. Resampling n pairs only matters through how many of each kind
    (a-only right, both/neither, b-only right) are drawn, which is a multinomial draw: this is that
    exact equivalent, O(n_boot) whatever n. Reproducible for a given seed. p_value is McNemar's
    exact p on the same arrays (the bootstrap gives the CI only); df is NaN. Pool seeds by
    concatenating per-seed arrays, as for `mcnemar`.
    """
    m = mcnemar(correct_a, correct_b)
    if m.n == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, math.nan, "paired_bootstrap")
    rng = np.random.default_rng(seed)
    probs = np.array([m.b, m.n - m.b - m.c, m.c], dtype=float) / m.n
    counts = rng.multinomial(m.n, probs, size=n_boot)
    boot = 100 * (counts[:, 2] - counts[:, 0]) / m.n
    lo, hi = np.quantile(boot, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Comparison(m.diff_pp, float(lo), float(hi), m.p_value, math.nan, "paired_bootstrap")


# --- precision-targeted number of seeds ------------------------------------------------------------


def ci_half_width(diffs: Sequence[float], confidence: float = 0.95, floor_sd: float | None = None) -> float:
    """t(n-1) * max(sd, floor_sd) / sqrt(n): half-width of the CI of the mean per-seed difference.

    inf with fewer than 2 finite differences (no spread known yet).
    """
    d = _clean(diffs)
    if len(d) < 2:
        return math.inf
    return _t_half(_floor(float(d.std(ddof=1)), floor_sd), len(d), confidence)


def needs_more_seeds(
    diffs: Sequence[float], target_half_width: float, n_max: int, floor_sd: float | None = None
) -> bool:
    """True while the CI half-width of the mean difference exceeds the target and n < n_max.

    A stopping rule on precision only: it never looks at the difference itself or a p-value, so
    adding seeds until the CI is narrow enough does not bias the test (stopping when p < alpha
    would). Pass floor_sd so two seeds that agree by luck do not stop it.
    """
    n = len(_clean(diffs))
    return n < n_max and ci_half_width(diffs, floor_sd=floor_sd) > target_half_width
