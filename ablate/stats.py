"""How sure are we that an arm differs from its baseline, over seeds *and* test images?

Two sources of noise change the number a reader compares: training randomness (the seed: initial
weights, data order, augmentation), which a rerun changes, and test-set sampling (which images the
test set happens to hold), which a new test set changes. Every interval a reader generalises from
carries both, as variance components of the crossed seed x image design (`crossed`): for per-image
scores z[s, i] = delta + u_s + v_i + w_si, Var(mean) = s_u^2/n + s_v^2/m + s_w^2/(n m), estimated
without bias by (MS_seed + MS_image - MS_residual) / (n m) from the two-way ANOVA; the image part
(MS_image - MS_residual) / (n m) is truncated at zero and degrees of freedom are Satterthwaite's.

The primary arm-vs-baseline comparison uses the design (`design`, from `blocked_residual` and
`versus`): every arm of a backbone is trained on the same seeds, so the blocked model acc[a, s] =
mu + arm_a + seed_s + e pools the residual variance over all k arms ((k-1)(n-1) df instead of n-1
per arm; it assumes the arms' seed noise is homoscedastic), and the seed part of a difference has
variance 2 MS_res / n.
The per-arm paired test (its own variance, n-1 df) is kept as the robustness check; where an arm's
own spread is far above the other arms' (a one-sided F check), the blocked model's assumption fails
for it and its paired test becomes its primary. Both add the arm's image component. Holm
controls the family-wise error across arms (`holm`, `verdict`). `welch` is the fallback when seeds
are not shared. tests/test_coverage.py checks the intervals' coverage by simulation.

Power (`power`, `mde`, `seeds_needed`) follows from a test's SE and df (noncentral t); the image
component does not shrink with more seeds, so a target can be unreachable with a given test set.
Per-image tests (`mcnemar`, `paired_bootstrap`) answer a narrower question, one seed at a time: do
these two trained networks differ on these images. `needs_more_seeds` is a precision-only stopping
rule for adaptive seed plans, `binomial_sd_pp` the test set's binomial noise of one accuracy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize as spo
from scipy import stats as sps

ALPHA = 0.05
BETTER, SAME, WORSE, UNTESTED = "better", "no detectable difference", "worse", "not testable"
Num = float | np.ndarray  # scalars in the report, arrays (leading batch axes) in simulations


@dataclass(frozen=True)
class Summary:
    """A mean over seeds with its SD (ddof=1) and a t-based CI that also carries test-set noise."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """Arm minus baseline: the difference, its CI, two-sided p, df and which test ran.

    `test` is "blocked", "paired", "welch" or "paired_bootstrap". var_seed / var_img split the
    variance of `diff` into what a rerun with new seeds and what a new test set would change
    (var_img NaN: no per-image data, the interval covers seeds only).
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float
    test: str
    var_seed: float = math.nan
    var_img: float = math.nan

    @property
    def se(self) -> float:
        return math.sqrt(self.var_seed + (self.var_img if math.isfinite(self.var_img) else 0.0))


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


# --- variance components ---------------------------------------------------------------------------


def satterthwaite(terms: Sequence[tuple[Num, Num]]) -> tuple[Num, Num]:
    """(sum of the variance terms, Satterthwaite df) for terms (v_k, df_k).

    A term may be negative (a subtracted mean square) and df_k may be inf (a known term). Where
    every term is zero the df is inf.
    """
    total = sum(v for v, _ in terms)
    denominator = sum(np.square(v) / np.asarray(d, dtype=float) for v, d in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denominator > 0, np.square(total) / np.where(denominator > 0, denominator, 1.0), np.inf)
    return total, (float(df) if np.ndim(df) == 0 else df)


@dataclass(frozen=True)
class Crossed:
    """The variance of a mean of per-image scores over n seeds x m images, by source.

    var_seed = Var_s(seed means) / n: what a rerun with other seeds changes (on these images);
    var_img = s_v^2 / m: what another test set of m images would change (truncated at 0).
    """

    mean: Num
    var_seed: Num
    df_seed: Num
    var_img: Num
    df_img: Num


def crossed(scores: np.ndarray) -> Crossed:
    """Two-way ANOVA variance components of scores (..., n seeds, m images).

    With one seed, seed variance is unknown (NaN) and the image part is MS_image / m, which then
    also holds the seed x image residual (conservative).
    """
    x = np.asarray(scores, dtype=float)
    n, m = x.shape[-2:]
    grand = x.mean(axis=(-2, -1))
    rows, cols = x.mean(axis=-1), x.mean(axis=-2)
    ms_img = n * cols.var(axis=-1, ddof=1) if m > 1 else np.full_like(grand, np.nan)
    if n < 2:
        return Crossed(grand, np.full_like(grand, np.nan), 0.0, ms_img / m, m - 1.0)
    ms_seed = m * rows.var(axis=-1, ddof=1)
    ss_total = np.square(x - grand[..., None, None]).sum(axis=(-2, -1))
    df_res = (n - 1) * (m - 1)
    ms_res = (ss_total - (n - 1) * ms_seed - (m - 1) * ms_img) / df_res
    ms_res = np.maximum(ms_res, 0.0)  # float rounding of an exact zero
    positive, negative = ms_img / (n * m), ms_res / (n * m)
    var_img, df_img = satterthwaite([(positive, m - 1.0), (-negative, float(df_res))])
    keep = var_img > 0
    var_img = np.where(keep, var_img, 0.0)
    df_img = np.where(keep, df_img, np.inf)
    scalar = np.ndim(grand) == 0
    return Crossed(float(grand) if scalar else grand, ms_seed / (n * m), n - 1.0,
                   float(var_img) if scalar else var_img, float(df_img) if scalar else df_img)


def blocked_residual(acc: np.ndarray) -> tuple[Num, float]:
    """(MS_residual, df) of the arms x seeds two-way model acc[a, s] = mu + arm_a + seed_s + e.

    acc (..., k arms, n shared seeds). Under homoscedastic e this estimates Var(e) from all arms at
    once with (k-1)(n-1) df; a paired difference of two arms at one seed has variance 2 MS_residual.
    """
    x = np.asarray(acc, dtype=float)
    k, n = x.shape[-2:]
    resid = x - x.mean(axis=-1, keepdims=True) - x.mean(axis=-2, keepdims=True) + x.mean(axis=(-2, -1), keepdims=True)
    df = float((k - 1) * (n - 1))
    ms = np.square(resid).sum(axis=(-2, -1)) / df if df > 0 else np.full(x.shape[:-2], np.nan)
    return (float(ms) if np.ndim(ms) == 0 else ms), df


# --- t intervals from variance terms ---------------------------------------------------------------


def t_interval(center: Num, var: Num, df: Num, confidence: float = 0.95) -> tuple[Num, Num, Num]:
    """(low, high, two-sided p of center = 0) of center +- t(df) sqrt(var); NaN where var is 0 or NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.where(np.asarray(var) > 0, var, np.nan))
        half = sps.t.ppf(0.5 + confidence / 2, df) * se
        p = 2 * sps.t.sf(np.abs(center) / se, df)
    low, high = center - half, center + half
    if np.ndim(low) == 0:
        return float(low), float(high), float(p)
    return low, high, p


def _comparison(diff: float, seed: tuple[float, float], image: tuple[float, float] | None, test: str,
                confidence: float) -> Comparison:
    terms = [seed] + ([image] if image is not None and math.isfinite(image[0]) else [])
    var, df = satterthwaite(terms)
    low, high, p = t_interval(diff, var, df, confidence)
    return Comparison(diff, low, high, p, float(df) if var > 0 else math.nan, test, seed[0],
                      image[0] if image is not None else math.nan)


def summarize(values: Sequence[float], confidence: float = 0.95, *, image: tuple[float, float] | None = None
              ) -> Summary:
    """Mean over seeds with CI mean +- t sqrt(s^2/n + image variance), Satterthwaite df.

    image: (variance, df) of the test set's part (`crossed(...).var_img`, or `binomial_sd_pp`^2
    with df inf as a conservative bound where per-image data is missing); None: seeds only.
    With one value the spread over seeds is unknown (std and CI are NaN).
    """
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    c = _comparison(mean, (std**2 / n, n - 1.0), image, "mean", confidence)
    return Summary(n, mean, std, c.ci_low, c.ci_high)


# --- arm vs baseline --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Versus:
    """One arm vs its baseline on n shared seeds: the pieces of the primary test and of the check.

    Arrays with leading batch axes in simulations, floats in the report.
    """

    diff: Num
    n: int
    var_pooled: Num  # 2 MS_residual(blocked) / n: the primary's seed part
    df_pooled: float
    var_paired: Num  # s_d^2 / n from this arm's own differences: the robustness check's seed part
    var_img: Num  # s_v^2 / m of the per-image differences (0 where none is stored)
    df_img: Num
    var_others: Num = math.nan  # 2 MS_residual / n of the other arms (leave this one out): the spread check
    df_others: float = 0.0

    def blocked(self, confidence: float = 0.95) -> tuple[Num, Num, Num, Num]:
        """(low, high, p, df) of the blocked test with the image component."""
        return self._interval(self.var_pooled, self.df_pooled, confidence)

    def check(self, confidence: float = 0.95) -> tuple[Num, Num, Num, Num]:
        """(low, high, p, df) of the per-arm paired test with the image component."""
        return self._interval(self.var_paired, self.n - 1.0, confidence)

    def primary(self, confidence: float = 0.95) -> tuple[Num, Num, Num, Num]:
        """The blocked test, except where the spread check flags the arm: there the blocked model's equal-spread
        assumption fails and the paired test (its own variance) decides (simulated: FWER and coverage closer
        to nominal than the blocked test alone; tests/test_coverage.py)."""
        flag = self.heterogeneous()
        if np.ndim(flag) == 0:
            return self.check(confidence) if flag else self.blocked(confidence)
        return tuple(np.where(flag, c, b) for c, b in zip(self.check(confidence), self.blocked(confidence)))

    def _interval(self, var: Num, df: float, confidence: float) -> tuple[Num, Num, Num, Num]:
        total, dfs = satterthwaite([(var, df), (self.var_img, self.df_img)])
        low, high, p = t_interval(self.diff, total, dfs, confidence)
        return low, high, p, dfs

    def spread_ratio(self) -> Num:
        """The arm's own paired variance over the pooled one of the backbone's other arms (about 1 when
        the blocked model's equal-variance assumption holds; NaN with fewer than 3 arms)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(self.var_paired, self.var_others)

    def heterogeneous(self, alpha: float = ALPHA) -> Num:
        """True where the arm's own variance exceeds the other arms' pooled one beyond the F(n-1, df)
        1-alpha point: a one-sided, approximate check (both share the baseline) with little power at
        few seeds. Such an arm's blocked interval is too narrow; read the paired check."""
        if not self.df_others > 0:
            return np.zeros(np.shape(self.var_paired), dtype=bool) if np.ndim(self.var_paired) else False
        crit = sps.f.ppf(1 - alpha, self.n - 1, self.df_others)
        return np.asarray(self.spread_ratio() > crit) if np.ndim(self.var_paired) else bool(self.spread_ratio() > crit)


def versus(arm: np.ndarray, base: np.ndarray, pooled: tuple[Num, float], images: np.ndarray | None = None,
           others: tuple[Num, float] | None = None) -> Versus:
    """Arm vs baseline: arm, base (..., n) accuracies (%) on the same seeds; pooled = blocked_residual of
    all the backbone's arms, others = the same without this arm (for the spread check); images
    (..., n, m) per-image score differences (pp: 100 * (y_arm - y_base)) on the same seeds and images,
    or None."""
    d = np.asarray(arm, dtype=float) - np.asarray(base, dtype=float)
    n = d.shape[-1]
    ms, df = pooled
    sd2 = d.var(axis=-1, ddof=1) if n > 1 else np.full(d.shape[:-1], np.nan)
    scale = max(float(np.max(np.abs(arm))), float(np.max(np.abs(base))), 1.0)
    sd2 = np.where(sd2 <= (1e-9 * scale) ** 2, 0.0, sd2)  # rounding of equal deltas is no spread
    if images is None:
        var_img, df_img = np.zeros(d.shape[:-1]), np.full(d.shape[:-1], np.inf)
    else:
        c = crossed(images)
        var_img, df_img = c.var_img, c.df_img
    scalar = d.ndim == 1
    as_out = (lambda v: float(v)) if scalar else (lambda v: np.asarray(v, dtype=float))
    ms_o, df_o = others if others is not None and others[1] > 0 else (math.nan, 0.0)
    return Versus(as_out(d.mean(axis=-1)), n, as_out(np.asarray(2 * ms / n)), df, as_out(sd2 / n),
                  as_out(var_img), as_out(df_img), as_out(np.asarray(2 * ms_o / n) + 0 * sd2), df_o)


def image_differences(arm: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-image score differences in pp, 100 * (correct_arm - correct_base), for `versus`."""
    return 100.0 * (np.asarray(arm, dtype=np.int8) - np.asarray(base, dtype=np.int8))


def design(acc: np.ndarray, correct: np.ndarray | None = None) -> list[Versus]:
    """Every arm of one backbone vs its baseline (row 0) on shared seeds: acc (..., k, n) in %,
    correct (..., k, n, m) per-image correctness or None. The pooled residual comes from all k arms,
    each arm's spread check from the other k - 1."""
    k = np.shape(acc)[-2]
    pooled = blocked_residual(acc)
    out = []
    for a in range(1, k):
        others = blocked_residual(np.delete(acc, a, axis=-2)) if k > 2 else None
        z = image_differences(correct[..., a, :, :], correct[..., 0, :, :]) if correct is not None else None
        out.append(versus(np.asarray(acc)[..., a, :], np.asarray(acc)[..., 0, :], pooled, z, others))
    return out


def comparison(v: Versus, which: str = "primary", confidence: float = 0.95) -> Comparison:
    """The report's record of one arm: the primary test ("blocked", or "paired (unequal spread)" where
    the spread check flags the arm) or the check ("paired")."""
    paired_test = which == "check" or bool(v.heterogeneous())
    low, high, p, df = v.check(confidence) if paired_test else v.blocked(confidence)
    test = "paired" if which == "check" else ("paired (unequal spread)" if paired_test else "blocked")
    ok = math.isfinite(float(low))
    return Comparison(float(v.diff), float(low), float(high), float(p), float(df) if ok else math.nan, test,
                      float(v.var_paired if paired_test else v.var_pooled), float(v.var_img))


def paired(arm: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Paired t-test of arm - baseline over seeds (sequences aligned by seed; df = n - 1; seeds only).

    Same-seed arms share data order, augmentation and shared-layer init, so the per-seed difference
    carries far less noise than either accuracy. A pair with a missing/NaN side is dropped. One
    pair, or differences with zero spread (below 1e-9 of the accuracies: float rounding of equal
    deltas), give the difference with a NaN p-value and CI. p is scipy's ttest_rel.
    """
    if len(arm) != len(baseline):
        raise ValueError(f"paired needs equal-length samples aligned by seed, got {len(arm)} and {len(baseline)}")
    a = np.asarray([math.nan if v is None else v for v in arm], dtype=float)
    b = np.asarray([math.nan if v is None else v for v in baseline], dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, math.nan, "paired")
    v = versus(a, b, (math.nan, math.nan))
    c = comparison(v, "check", confidence)
    if not math.isfinite(c.p_value):
        return Comparison(c.diff, math.nan, math.nan, math.nan, float(len(a) - 1) if len(a) > 1 else math.nan,
                          "paired", c.var_seed)
    with warnings.catch_warnings():  # near-zero spread warns about precision; the value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(sps.ttest_rel(a, b).pvalue)
    return Comparison(c.diff, c.ci_low, c.ci_high, p, c.df, "paired", c.var_seed, math.nan)


def welch(arm: Sequence[float], baseline: Sequence[float], confidence: float = 0.95, *,
          image: tuple[float, float] | None = None) -> Comparison:
    """Welch's two-sample test of mean(arm) - mean(baseline), for seeds that are not shared.

    The seed part is Welch-Satterthwaite's; image: (variance, df) of the test-set part
    (`unpaired_image_component`) or None (seeds only: then p and CI equal scipy's ttest_ind).
    Needs two values on each side; with no spread anywhere the p-value is NaN.
    """
    a, b = _clean(arm), _clean(baseline)
    if len(a) == 0 or len(b) == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, math.nan, "welch")
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2 or a.var(ddof=1) + b.var(ddof=1) == 0:
        return Comparison(diff, math.nan, math.nan, math.nan, math.nan, "welch")
    seed = satterthwaite([(a.var(ddof=1) / len(a), len(a) - 1.0), (b.var(ddof=1) / len(b), len(b) - 1.0)])
    return _comparison(diff, (float(seed[0]), float(seed[1])), image, "welch", confidence)


def unpaired_image_component(arm: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """(s_v^2 / m, df) of the difference of two arms' mean per-image scores (n_a x m, n_b x m), seeds
    not shared: Var_i(column differences) minus each arm's own seed x image residual / its n."""
    a, b = np.asarray(arm, dtype=float), np.asarray(base, dtype=float)
    (na, m), nb = a.shape, b.shape[0]
    if na < 2 or nb < 2 or m < 2:
        return math.nan, math.nan
    cols = a.mean(axis=0) - b.mean(axis=0)

    def ms_res(x: np.ndarray) -> float:
        r = x - x.mean(axis=0, keepdims=True) - x.mean(axis=1, keepdims=True) + x.mean()
        return float(np.square(r).sum() / ((x.shape[0] - 1) * (m - 1)))

    var, df = satterthwaite([(float(cols.var(ddof=1)) / m, m - 1.0),
                             (-ms_res(a) / (na * m), (na - 1.0) * (m - 1)),
                             (-ms_res(b) / (nb * m), (nb - 1.0) * (m - 1))])
    return (float(var), float(df)) if var > 0 else (0.0, math.inf)


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


# --- power: what could have been detected ---------------------------------------------------------


def holm_first_alpha(alpha: float, m: int) -> float:
    """alpha / m: the level Holm's first (strictest) step tests at, for an MDE that survives Holm."""
    if m < 1:
        raise ValueError(f"family size m must be >= 1, got {m}")
    return alpha / m


def power(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test with this SE and df to detect `effect`: P(|T| > t_crit), T ~ nct(df, effect/se).

    df inf: the normal limit. The df is taken as fixed (Satterthwaite's estimate where it is one).
    """
    if not (se > 0 and df > 0):
        return math.nan
    nc = abs(effect) / se
    if math.isinf(df):
        crit = float(sps.norm.ppf(1 - alpha / 2))
        return float(sps.norm.sf(crit - nc) + sps.norm.sf(crit + nc))
    crit = float(sps.t.ppf(1 - alpha / 2, df))
    # P(T < -crit | nc) = P(T > crit | -nc): scipy's nct.cdf far in the lower tail can return NaN
    return float(sps.nct.sf(crit, df, nc) + sps.nct.sf(crit, df, -nc))


def _check_power_args(alpha: float, target: float) -> None:
    if not 0 < alpha < 1 or not alpha < target < 1:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={target}")


def mde(se: float, df: float, alpha: float = ALPHA, target: float = 0.8) -> float:
    """Minimum detectable effect (units of se) of the two-sided t-test with this SE and df at the given power.

    Printed beside every "no detectable difference", so a null result says how large an effect it
    could have missed. At Holm's first step pass alpha = holm_first_alpha(alpha, m). NaN when the
    SE or df is unknown; 0 when the SE is 0.
    """
    _check_power_args(alpha, target)
    if not (math.isfinite(se) and df > 0):
        return math.nan
    if se == 0:
        return 0.0
    hi = se
    while power(hi, se, df, alpha) < target:
        hi *= 2
    return float(spo.brentq(lambda d: power(d, se, df, alpha) - target, 0.0, hi, xtol=1e-12 * se, rtol=1e-12))


@dataclass(frozen=True)
class Plan:
    """What the primary test's variance would be with n seeds: unit / n + var_img, df by Satterthwaite.

    unit: the seed variance of one seed's difference (2 MS_residual, or s_d^2 for a paired test);
    df_per_seed: the seed part's df grows as df_per_seed * (n - 1) (k - 1 arms for the blocked model);
    var_img, df_img: the test set's part, which more seeds do not shrink.
    """

    unit: float
    df_per_seed: float
    var_img: float = 0.0
    df_img: float = math.inf

    def power(self, effect: float, n: int, alpha: float = ALPHA) -> float:
        var, df = satterthwaite([(self.unit / n, self.df_per_seed * (n - 1)), (self.var_img, self.df_img)])
        return power(effect, math.sqrt(var), df, alpha)

    def reachable(self, effect: float, alpha: float = ALPHA, target: float = 0.8) -> bool:
        """False when even infinitely many seeds leave the power below target: the test set's own noise."""
        if self.var_img <= 0:
            return effect != 0
        return power(effect, math.sqrt(self.var_img), self.df_img, alpha) >= target


def seeds_needed(plan: Plan, effect: float, alpha: float = ALPHA, target: float = 0.8, max_n: int = 1000
                 ) -> int | None:
    """Smallest n >= 2 whose power for `effect` reaches `target` (pass Holm's alpha for a family).

    None when even max_n is not enough, the effect is 0, or the test set alone makes it unreachable
    (`Plan.reachable`). Power rises with n, so doubling + bisection suffices.
    """
    _check_power_args(alpha, target)
    if not (math.isfinite(plan.unit) and plan.unit >= 0 and math.isfinite(effect)) or effect == 0:
        return None
    tol = 1e-9  # mde() solves to ~1e-12; a round trip must land on the same n

    def enough(n: int) -> bool:
        return plan.power(effect, n, alpha) >= target - tol

    if max_n < 2 or not enough(max_n):
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
    """100 * sqrt(p (1 - p) / n), p = acc / 100: the binomial SD (pp) of an accuracy measured on n images.

    An upper bound of the image variance component of one arm's accuracy (image difficulty cannot
    vary more than a coin with the same mean), used where per-image correctness is not stored.
    """
    if n_images <= 0:
        raise ValueError(f"n_images must be > 0, got {n_images}")
    p = acc_pct / 100
    if not 0 <= p <= 1:
        raise ValueError(f"accuracy must be in [0, 100] %, got {acc_pct}")
    return 100 * math.sqrt(p * (1 - p) / n_images)


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
    when no image is discordant). Use it on one seed's pair of trained networks: it asks whether
    these two networks differ on these images, not whether the arm beats its baseline in general
    (pooling seeds would treat seeds x images as independent and ignore the seed-to-seed spread).
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
    exact p on the same arrays (the bootstrap gives the CI only); df is NaN. One seed at a time, as
    `mcnemar`.
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


def _floor(sd: float, floor_sd: float | None) -> float:
    """max(sd, floor_sd), with a NaN sd replaced by the floor; no floor -> sd unchanged."""
    if floor_sd is None or not math.isfinite(floor_sd):
        return sd
    return floor_sd if not math.isfinite(sd) else max(sd, floor_sd)


def _t_half(sd: float, n: int, confidence: float) -> float:
    return float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)


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
