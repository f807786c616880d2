"""Seed statistics against hand-computed values and scipy's own implementations."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

import numpy as np

from ablate.stats import (
    BETTER,
    SAME,
    UNTESTED,
    WORSE,
    Comparison,
    binomial_sd_pp,
    ci_half_width,
    compare,
    floored_sd,
    holm,
    holm_first_alpha,
    mcnemar,
    mde,
    needs_more_seeds,
    paired,
    paired_bootstrap,
    pareto_front,
    seeds_needed,
    summarize,
    t_power,
    verdict,
    welch,
)


def test_ci_of_a_known_sample() -> None:
    # 1..5: mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776445; half width = 2.776445 * 1.581139 / sqrt(5)
    s = summarize([1, 2, 3, 4, 5])
    assert s.n == 5 and s.mean == 3.0
    assert s.std == pytest.approx(math.sqrt(2.5))
    assert s.ci_low == pytest.approx(3 - 1.963243, abs=1e-6)
    assert s.ci_high == pytest.approx(3 + 1.963243, abs=1e-6)
    low, high = sps.t.interval(0.95, 4, loc=3, scale=sps.sem([1, 2, 3, 4, 5]))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))


def test_summary_of_one_or_no_value_has_no_spread() -> None:
    one = summarize([84.68])
    assert one.n == 1 and one.mean == 84.68 and math.isnan(one.std) and math.isnan(one.ci_low)
    none = summarize([None, float("nan")])
    assert none.n == 0 and math.isnan(none.mean)


def test_welch_matches_scipy() -> None:
    arm, base = [85.38, 85.9, 84.7, 85.6], [84.68, 84.1, 84.9]
    c = welch(arm, base)
    ref = sps.ttest_ind(arm, base, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue)
    assert c.df == pytest.approx(ref.df)
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    assert c.diff == pytest.approx(sum(arm) / 4 - sum(base) / 3)


def test_welch_hand_value() -> None:
    # a = [1, 2, 3] (var 1), b = [4, 6, 8] (var 4): diff -4, se = sqrt(1/3 + 4/3) = 1.290994,
    # t = -3.098387, df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 2.941176
    c = welch([1, 2, 3], [4, 6, 8])
    assert c.diff == -4.0
    assert c.df == pytest.approx(2.941176, abs=1e-6)
    assert c.p_value == pytest.approx(2 * sps.t.sf(3.098387, 2.941176), rel=1e-5)


def test_welch_needs_two_values_each() -> None:
    c = welch([1.0], [2.0, 3.0])
    assert c.diff == -1.5 and math.isnan(c.p_value)
    assert math.isnan(welch([], [1.0, 2.0]).diff)
    same = welch([2.0, 2.0], [1.0, 1.0])  # no spread: difference known, test undefined
    assert same.diff == 1.0 and math.isnan(same.p_value) and math.isnan(same.ci_low)


def test_holm_adjustment_and_order() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped
    out = holm([0.01, float("nan"), 0.02])  # NaN is not part of the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_holm_never_below_raw_and_keeps_ranking() -> None:
    raw = [0.001, 0.2, 0.013, 0.04, 0.5]
    adj = holm(raw)
    assert all(a >= r for a, r in zip(adj, raw))
    assert sorted(range(5), key=lambda i: raw[i]) == sorted(range(5), key=lambda i: (adj[i], raw[i]))


def test_verdict() -> None:
    assert verdict(0.7, 0.01) == BETTER
    assert verdict(-0.7, 0.01) == WORSE
    assert verdict(0.7, 0.2) == SAME
    assert verdict(0.7, float("nan")) == UNTESTED


def test_pareto_front() -> None:
    cost = [1.0, 2.0, 3.0, 2.5, float("nan")]
    acc = [80.0, 85.0, 84.0, 86.0, 99.0]
    assert pareto_front(cost, acc) == [True, True, False, True, False]
    assert pareto_front([1.0, 1.0], [80.0, 80.0]) == [True, True]  # ties do not dominate each other


# --- paired t-test and the primary comparison ---------------------------------------------------


def test_paired_hand_values_and_scipy() -> None:
    # d = [1, 1, 0.5]: mean 5/6, sd = sqrt(1/12), se = 1/6, t = 5, df 2; t(0.975, 2) = 4.302653
    arm, base = [1.0, 2.0, 3.0], [0.0, 1.0, 2.5]
    c = paired(arm, base)
    assert c.test == "paired" and c.df == 2
    assert c.diff == pytest.approx(5 / 6)
    assert (c.ci_low, c.ci_high) == pytest.approx((5 / 6 - 4.302653 / 6, 5 / 6 + 4.302653 / 6), abs=1e-6)
    ref = sps.ttest_rel(arm, base)
    assert ref.statistic == pytest.approx(5.0)
    assert c.p_value == pytest.approx(ref.pvalue) and c.p_value == pytest.approx(2 * sps.t.sf(5.0, 2))
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))


def test_paired_matches_scipy_on_seed_like_data() -> None:
    arm, base = [85.38, 85.9, 84.7, 85.6, 85.1], [84.68, 85.1, 84.9, 84.7, 84.8]
    c = paired(arm, base, confidence=0.9)
    ref = sps.ttest_rel(arm, base)
    assert c.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.9)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))


def test_paired_edge_cases() -> None:
    one = paired([85.0], [84.0])
    assert one.diff == 1.0 and math.isnan(one.p_value) and math.isnan(one.ci_low)
    assert math.isnan(paired([], []).diff)
    flat = paired([85.0, 86.0], [84.0, 85.0])  # every seed +1: nothing to test against
    assert flat.diff == 1.0 and math.isnan(flat.p_value) and math.isnan(flat.ci_high)
    rounding = paired([83.5, 83.2], [83.3, 83.0])  # equal deltas whose floats differ in the last bit
    assert math.isnan(rounding.p_value) and math.isnan(rounding.ci_low)
    dropped = paired([1.0, 2.0, float("nan"), 3.0], [0.0, 1.0, 5.0, 2.5])  # the NaN pair is left out
    assert dropped.p_value == pytest.approx(paired([1.0, 2.0, 3.0], [0.0, 1.0, 2.5]).p_value)
    with pytest.raises(ValueError):
        paired([1.0, 2.0], [1.0])


def test_paired_floor_keeps_lucky_agreement_uncertain() -> None:
    c = paired([85.0, 86.0], [84.0, 85.0], floor_sd=0.5)
    half = sps.t.ppf(0.975, 1) * 0.5 / math.sqrt(2)
    assert (c.ci_low, c.ci_high) == pytest.approx((1 - half, 1 + half))
    assert c.p_value == pytest.approx(2 * sps.t.sf(1.0 / (0.5 / math.sqrt(2)), 1))
    # a floor below the observed spread changes nothing: p is still ttest_rel's
    arm, base = [1.0, 2.0, 3.0], [0.0, 1.0, 2.5]
    assert paired(arm, base, floor_sd=0.01) == paired(arm, base)


def test_comparison_stays_backward_compatible() -> None:
    c = Comparison(*(math.nan,) * 5)
    assert c.test == "welch"
    assert welch([1, 2, 3], [4, 6, 8]).test == "welch"


def test_compare_picks_paired_on_shared_seeds() -> None:
    arm = {0: 85.4, 1: 85.9, 2: 84.7, 7: 99.0}  # seed 7 has no baseline partner: left out
    base = {0: 84.7, 1: 85.1, 2: 84.4, 3: 80.0, 4: float("nan")}
    c = compare(arm, base)
    assert c.test == "paired"
    assert c == paired([85.4, 85.9, 84.7], [84.7, 85.1, 84.4])
    nan_shared = compare({0: 85.4, 1: float("nan"), 2: 84.7}, {0: 84.7, 1: 85.1, 2: 84.4})
    assert nan_shared == paired([85.4, 84.7], [84.7, 84.4])


def test_compare_falls_back_to_welch_for_unpaired_data() -> None:
    arm, base = {0: 85.4, 1: 85.9, 2: 84.7}, {3: 84.7, 4: 85.1, 0: 84.4}  # one shared seed only
    c = compare(arm, base)
    assert c.test == "welch"
    assert c == welch([85.4, 85.9, 84.7], [84.7, 85.1, 84.4])
    assert compare({0: 1.0, 1: 2.0}, {5: 1.5, 6: 2.5}).test == "welch"


# --- power ------------------------------------------------------------------------------------------


def _simulated_power(delta: float, sd: float, n: int, alpha: float, paired_test: bool, welch_test: bool) -> float:
    rng = np.random.default_rng(12345)
    draws = 20000
    base = rng.normal(0.0, sd, (draws, n))
    if paired_test:  # sd is the SD of the per-seed differences
        p = sps.ttest_rel(base + rng.normal(delta, sd, (draws, n)), base, axis=1).pvalue
    else:
        p = sps.ttest_ind(rng.normal(delta, sd, (draws, n)), base, axis=1, equal_var=not welch_test).pvalue
    return float(np.mean(p < alpha))


@pytest.mark.parametrize(
    ("n", "alpha", "paired_test", "welch_test"),
    [
        (3, 0.05, True, True),
        (6, 0.05 / 6, True, True),
        (2, 0.05, False, True),
        (3, 0.05 / 6, False, True),
        (10, 0.05, False, True),
        (2, 0.05, False, False),
        (5, 0.05, False, False),
    ],
)
def test_mde_has_the_promised_power_by_simulation(n: int, alpha: float, paired_test: bool, welch_test: bool) -> None:
    sd = 0.68
    delta = mde(sd, n, alpha=alpha, paired=paired_test, welch=welch_test)
    assert t_power(delta, sd, n, alpha, paired_test, welch=welch_test) == pytest.approx(0.8, abs=1e-9)
    assert _simulated_power(delta, sd, n, alpha, paired_test, welch_test) == pytest.approx(0.8, abs=0.015)


def test_mde_matches_the_design_notes() -> None:
    # DESIGN.md: SD 0.68 pp, Welch at alpha 0.05: about 7 pp with 2 seeds (simulated), about 0.9 pp with 10
    assert mde(0.68, 2, paired=False) == pytest.approx(7.0, abs=0.2)
    assert mde(0.68, 10, paired=False) == pytest.approx(0.9, abs=0.03)
    # Student's df = 2n - 2 would claim about half that at n = 2: the Welch critical value matters there
    assert mde(0.68, 2, paired=False, welch=False) < 0.6 * mde(0.68, 2, paired=False)
    assert mde(0.68, 10, paired=False, alpha=holm_first_alpha(0.05, 6)) > mde(0.68, 10, paired=False)


def test_power_at_zero_effect_is_alpha_and_edges() -> None:
    assert t_power(0.0, 0.68, 5, 0.05, True) == pytest.approx(0.05)
    assert t_power(0.0, 0.68, 5, 0.05, False, welch=False) == pytest.approx(0.05)
    assert mde(0.68, 1) == math.inf and mde(0.68, 0, paired=False) == math.inf
    assert mde(0.0, 3) == 0.0 and math.isnan(mde(float("nan"), 3))
    with pytest.raises(ValueError):
        mde(0.68, 3, alpha=0.05, power=0.01)


@pytest.mark.parametrize(("paired_test", "welch_test"), [(True, True), (False, True), (False, False)])
def test_seeds_needed_round_trips_mde(paired_test: bool, welch_test: bool) -> None:
    sd = 0.68
    for n in (2, 3, 5, 10, 30):
        delta = mde(sd, n, paired=paired_test, welch=welch_test)
        assert seeds_needed(sd, delta, paired=paired_test, welch=welch_test) == n
        assert seeds_needed(sd, 0.97 * delta, paired=paired_test, welch=welch_test) > n
        assert seeds_needed(sd, 1.03 * delta, paired=paired_test, welch=welch_test) <= n


def test_seeds_needed_limits() -> None:
    assert seeds_needed(0.68, 0.01) is None  # beyond max_n = 1000
    assert seeds_needed(0.68, 0.01, max_n=100_000) == pytest.approx(36_296, abs=2)
    assert seeds_needed(0.68, 0.0) is None
    assert seeds_needed(0.68, 100.0) == 2


def test_holm_first_alpha() -> None:
    assert holm_first_alpha(0.05, 6) == pytest.approx(0.05 / 6)
    with pytest.raises(ValueError):
        holm_first_alpha(0.05, 0)


# --- the test set's sampling noise as a floor ---------------------------------------------------------


def test_binomial_floor_by_hand() -> None:
    assert binomial_sd_pp(90.0, 10_000) == pytest.approx(0.3)  # 100 * sqrt(0.9 * 0.1 / 1e4)
    assert binomial_sd_pp(50.0, 100) == pytest.approx(5.0)  # 100 * 0.5 / 10
    assert binomial_sd_pp(83.2, 10_000) == pytest.approx(math.sqrt(0.832 * 0.168), rel=1e-12)  # 0.37387 pp
    assert binomial_sd_pp(100.0, 10_000) == 0.0
    assert floored_sd(0.1, 90.0, 10_000) == pytest.approx(0.3)
    assert floored_sd(0.5, 90.0, 10_000) == 0.5
    assert floored_sd(float("nan"), 90.0, 10_000) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        binomial_sd_pp(90.0, 0)
    with pytest.raises(ValueError):
        binomial_sd_pp(101.0, 100)


def test_summarize_floor_never_gives_a_zero_width_ci() -> None:
    bare = summarize([83.20, 83.20])
    assert bare.std == 0.0 and bare.half_width == 0.0  # what the floor exists to prevent
    floor = binomial_sd_pp(83.2, 10_000)
    s = summarize([83.20, 83.20], floor_sd=floor)
    assert s.std == 0.0 and s.mean == pytest.approx(83.2)  # the observed spread is still reported
    assert s.half_width == pytest.approx(12.706205 * floor / math.sqrt(2), rel=1e-6)
    assert summarize([1, 2, 3, 4, 5], floor_sd=0.1) == summarize([1, 2, 3, 4, 5])  # floor below s: no change
    assert math.isnan(summarize([84.0], floor_sd=0.3).ci_low)  # one value: still no CI


# --- per-image tests ----------------------------------------------------------------------------------


def _images(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([True] * both + [True] * only_a + [False] * only_b + [False] * neither)
    b = np.array([True] * both + [False] * only_a + [True] * only_b + [False] * neither)
    perm = np.random.default_rng(3).permutation(len(a))  # order must not matter
    return a[perm], b[perm]


def test_mcnemar_against_binomtest() -> None:
    a, b = _images(both=85, only_a=7, only_b=3, neither=5)
    m = mcnemar(a, b)
    assert (m.b, m.c, m.n) == (3, 7, 100)
    assert m.p_value == pytest.approx(sps.binomtest(7, 10, 0.5).pvalue) and m.p_value == pytest.approx(0.34375)
    assert m.diff_pp == pytest.approx(100 * (a.mean() - b.mean())) and m.diff_pp == pytest.approx(4.0)
    swapped = mcnemar(b, a)
    assert (swapped.b, swapped.c, swapped.diff_pp) == (7, 3, -4.0) and swapped.p_value == pytest.approx(m.p_value)
    strong = mcnemar(*_images(both=900, only_a=40, only_b=12, neither=48))
    assert strong.p_value == pytest.approx(sps.binomtest(40, 52, 0.5).pvalue) and strong.p_value < 0.001
    same = mcnemar(np.array([True, False]), np.array([True, False]))
    assert same.p_value == 1.0 and same.diff_pp == 0.0
    with pytest.raises(ValueError):
        mcnemar(np.array([True]), np.array([True, False]))


def test_paired_bootstrap_is_reproducible_and_consistent() -> None:
    a, b = _images(both=850, only_a=70, only_b=30, neither=50)
    c1, c2 = paired_bootstrap(a, b, seed=1), paired_bootstrap(a, b, seed=1)
    assert c1 == c2 and c1.test == "paired_bootstrap"
    assert paired_bootstrap(a, b, seed=2) != c1
    assert c1.diff == pytest.approx(4.0) and c1.ci_low < 4.0 < c1.ci_high
    assert c1.p_value == pytest.approx(mcnemar(a, b).p_value)
    # against a literal bootstrap that resamples image indices (same indices for both arms)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(a), size=(2000, len(a)))
    literal = 100 * (a[idx].mean(axis=1) - b[idx].mean(axis=1))
    lo, hi = np.quantile(literal, [0.025, 0.975])
    assert (c1.ci_low, c1.ci_high) == pytest.approx((lo, hi), abs=0.2)
    # and the normal approximation of the paired difference: sd = 100 * sqrt((d - diff^2) / n)
    sd = 100 * math.sqrt((0.1 - 0.04**2) / 1000)
    assert c1.ci_high - c1.ci_low == pytest.approx(2 * 1.959964 * sd, rel=0.08)


def test_paired_bootstrap_covers_the_true_difference() -> None:
    # images drawn from a population where the arm alone is right on 6% and the baseline alone on 4%:
    # true difference +2 pp; pooling 3 seeds x 2000 images is plain concatenation
    rng = np.random.default_rng(7)
    kinds = rng.choice(4, size=6000, p=[0.80, 0.06, 0.04, 0.10])  # both, only arm, only baseline, neither
    a, b = np.isin(kinds, [0, 1]), np.isin(kinds, [0, 2])
    c = paired_bootstrap(a, b, n_boot=4000, seed=0)
    assert c.ci_low < 2.0 < c.ci_high
    assert c.ci_low > 0  # 6000 images resolve 2 pp at this discordance
    assert math.isnan(paired_bootstrap(np.array([], dtype=bool), np.array([], dtype=bool)).diff)


# --- precision-targeted seeds -------------------------------------------------------------------------


def test_ci_half_width_against_t_ppf() -> None:
    diffs = [0.2, 0.5, 0.1, 0.4]
    sd = float(np.std(diffs, ddof=1))
    assert ci_half_width(diffs) == pytest.approx(sps.t.ppf(0.975, 3) * sd / 2)
    assert ci_half_width(diffs, confidence=0.9) == pytest.approx(sps.t.ppf(0.95, 3) * sd / 2)
    assert ci_half_width(diffs, floor_sd=1.0) == pytest.approx(sps.t.ppf(0.975, 3) * 1.0 / 2)
    assert ci_half_width([0.3]) == math.inf and ci_half_width([]) == math.inf
    assert ci_half_width([0.2, 0.2]) == 0.0


def test_needs_more_seeds_uses_precision_only() -> None:
    wide = [0.1, 1.5, -0.8]
    assert needs_more_seeds(wide, target_half_width=0.5, n_max=10)
    assert not needs_more_seeds(wide, target_half_width=0.5, n_max=3)  # budget spent
    assert not needs_more_seeds([0.50, 0.52, 0.51], target_half_width=0.5, n_max=10)
    assert needs_more_seeds([0.3], target_half_width=0.5, n_max=10)  # one seed: precision unknown
    assert not needs_more_seeds([0.2, 0.2], target_half_width=0.5, n_max=10)  # lucky agreement...
    assert needs_more_seeds([0.2, 0.2], target_half_width=0.5, n_max=10, floor_sd=0.3)  # ...caught by the floor
    # the same spread shifted far from zero (tiny p) needs exactly as many seeds: no p-value in the rule
    assert needs_more_seeds([x + 5 for x in wide], 0.5, 10) == needs_more_seeds(wide, 0.5, 10)
