"""Seed statistics against hand-computed values and scipy's own implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ablate.stats import (
    BETTER,
    SAME,
    UNTESTED,
    WORSE,
    Plan,
    binomial_sd_pp,
    blocked_residual,
    ci_half_width,
    crossed,
    design,
    holm,
    holm_first_alpha,
    mcnemar,
    mde,
    needs_more_seeds,
    paired,
    paired_bootstrap,
    pareto_front,
    power,
    satterthwaite,
    seeds_needed,
    summarize,
    unpaired_image_component,
    verdict,
    versus,
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


# --- variance components and the blocked design ------------------------------------------------------


def test_satterthwaite_by_hand() -> None:
    # Welch's df for a = [1, 2, 3], b = [4, 6, 8]: (1/3 + 4/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 2.941176
    var, df = satterthwaite([(1 / 3, 2), (4 / 3, 2)])
    assert var == pytest.approx(5 / 3) and df == pytest.approx(2.941176, abs=1e-6)
    assert satterthwaite([(2.0, 5), (0.0, math.inf)]) == (2.0, 5.0)  # a known zero term changes nothing
    assert satterthwaite([(0.0, 3)])[1] == math.inf


def test_crossed_components_by_hand() -> None:
    # z = row + col exactly (no residual): MS_seed = m Var(rows), MS_img = n Var(cols), MS_res = 0
    rows, cols = np.array([0.0, 2.0, 4.0]), np.array([1.0, -1.0, 3.0, 5.0])
    c = crossed(rows[:, None] + cols[None, :])
    n, m = 3, 4
    assert c.mean == pytest.approx(rows.mean() + cols.mean())
    assert c.var_seed == pytest.approx(rows.var(ddof=1) / n)  # Var_s(row means) / n
    assert c.var_img == pytest.approx(cols.var(ddof=1) / m)  # (MS_img - 0) / (n m) = Var_i(cols) / m
    assert c.df_seed == n - 1 and c.df_img == pytest.approx(m - 1)
    # pure residual noise: the image part is truncated at zero (MS_img < MS_res here)
    flat = crossed(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    assert flat.var_img == 0.0 and flat.df_img == math.inf and flat.var_seed == 0.0


def test_crossed_variance_is_unbiased_by_simulation() -> None:
    """z = u_s + v_i + w_si: the estimate of Var(mean) = s_u^2/n + s_v^2/m + s_w^2/(nm) averages to it."""
    rng = np.random.default_rng(0)
    n, m, reps = 4, 50, 4000
    su, sv, sw = 0.7, 1.5, 2.0
    z = rng.normal(0, su, (reps, n, 1)) + rng.normal(0, sv, (reps, 1, m)) + rng.normal(0, sw, (reps, n, m))
    c = crossed(z)
    truth = su**2 / n + sv**2 / m + sw**2 / (n * m)
    assert np.mean(c.var_seed + c.var_img) == pytest.approx(truth, rel=0.03)
    assert np.var(c.mean) == pytest.approx(truth, rel=0.06)  # and it is the variance the means really have


def test_blocked_residual_is_the_two_way_anova() -> None:
    acc = np.array([[80.0, 82.0, 81.0], [81.0, 84.0, 81.5], [79.0, 83.0, 80.0]])
    ms, df = blocked_residual(acc)
    resid = acc - acc.mean(1, keepdims=True) - acc.mean(0, keepdims=True) + acc.mean()
    assert df == 4 and ms == pytest.approx(np.square(resid).sum() / 4)
    # with one arm and its baseline the blocked test is the paired test: 2 MS_res = var of the differences
    two = acc[:2]
    assert 2 * blocked_residual(two)[0] == pytest.approx(np.var(two[1] - two[0], ddof=1))


def test_design_primary_and_check_by_hand() -> None:
    acc = np.array([[80.0, 82.0, 81.0], [81.0, 84.0, 81.5], [79.0, 83.0, 80.0]])
    ms, df = blocked_residual(acc)
    v1, v2 = design(acc)
    d1 = acc[1] - acc[0]
    assert v1.diff == pytest.approx(d1.mean()) and v1.var_img == 0.0
    low, high, p, dof = v1.blocked()
    half = sps.t.ppf(0.975, 4) * math.sqrt(2 * ms / 3)
    assert (low, high, dof) == pytest.approx((d1.mean() - half, d1.mean() + half, 4))
    assert p == pytest.approx(2 * sps.t.sf(abs(d1.mean()) / math.sqrt(2 * ms / 3), 4))
    c = v1.check()
    ref = sps.ttest_rel(acc[1], acc[0])
    assert c[2] == pytest.approx(ref.pvalue) and (c[0], c[1]) == pytest.approx(tuple(ref.confidence_interval()))
    # the spread check compares the arm with the other arms' pooled residual (here: arm 2 and the baseline)
    assert v1.spread_ratio() == pytest.approx(np.var(d1, ddof=1) / np.var(acc[2] - acc[0], ddof=1))
    assert not v1.heterogeneous() and not v2.heterogeneous()


def test_versus_adds_the_image_component() -> None:
    rng = np.random.default_rng(1)
    arm, base = rng.random((3, 200)) < 0.85, rng.random((3, 200)) < 0.8
    z = 100.0 * (arm.astype(int) - base.astype(int))
    acc_a, acc_b = 100 * arm.mean(1), 100 * base.mean(1)
    v = versus(acc_a, acc_b, (1.0, 8.0), z)
    c = crossed(z)
    assert v.diff == pytest.approx(c.mean) and v.var_img == pytest.approx(c.var_img)
    var, df = satterthwaite([(2 * 1.0 / 3, 8.0), (c.var_img, c.df_img)])
    low, high, p, dof = v.blocked()
    assert dof == pytest.approx(df) and high - low == pytest.approx(2 * sps.t.ppf(0.975, df) * math.sqrt(var))


def test_design_flags_a_much_noisier_arm() -> None:
    rng = np.random.default_rng(2)
    acc = rng.normal(80, 0.3, (6, 6))
    acc[3] += np.array([-6.0, 5.0, -4.0, 6.0, -5.0, 4.0])  # arm 3's seeds swing by +-5 pp
    found = design(acc)
    assert found[2].heterogeneous() and not any(v.heterogeneous() for i, v in enumerate(found) if i != 2)
    assert found[2].primary() == found[2].check()  # its own variance decides
    assert found[0].primary() == found[0].blocked()


def test_unpaired_image_component_by_simulation() -> None:
    """Seeds not shared: Var_i of the column differences minus each side's seed x image residual / n."""
    rng = np.random.default_rng(3)
    m, sv = 400, 2.0
    estimates = []
    for _ in range(300):
        v = rng.normal(0, sv, m)  # the image effect on the difference
        a = v[None, :] + rng.normal(0, 3.0, (3, m)) + rng.normal(0, 1, (3, 1))
        b = rng.normal(0, 3.0, (4, m)) + rng.normal(0, 1, (4, 1))
        estimates.append(unpaired_image_component(a, b)[0])
    assert np.mean(estimates) == pytest.approx(sv**2 / m, rel=0.1)
    assert math.isnan(unpaired_image_component(np.zeros((1, 5)), np.zeros((3, 5)))[0])


def test_welch_with_an_image_component() -> None:
    arm, base = [85.38, 85.9, 84.7, 85.6], [84.68, 84.1, 84.9]
    plain = welch(arm, base)
    wider = welch(arm, base, image=(0.04, 500.0))
    var, df = satterthwaite([(np.var(arm, ddof=1) / 4, 3), (np.var(base, ddof=1) / 3, 2), (0.04, 500.0)])
    assert wider.df == pytest.approx(df) and wider.p_value > plain.p_value
    assert wider.ci_high - wider.ci_low == pytest.approx(2 * sps.t.ppf(0.975, df) * math.sqrt(var))


def test_summarize_carries_the_image_part() -> None:
    values = [80.0, 81.0, 82.5]
    s = summarize(values, image=(0.09, math.inf))
    var, df = satterthwaite([(np.var(values, ddof=1) / 3, 2), (0.09, math.inf)])
    assert s.ci_high - s.ci_low == pytest.approx(2 * sps.t.ppf(0.975, df) * math.sqrt(var))
    assert summarize(values) == summarize(values, image=None)
    assert math.isnan(summarize([84.0], image=(0.09, math.inf)).ci_low)  # one seed: the seed spread is unknown


# --- power ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "alpha"), [(2.0, 0.05), (8.0, 0.05 / 4), (30.0, 0.05), (math.inf, 0.05)])
def test_mde_has_the_promised_power_by_simulation(df: float, alpha: float) -> None:
    se = 0.68
    delta = mde(se, df, alpha)
    assert power(delta, se, df, alpha) == pytest.approx(0.8, abs=1e-9)
    rng = np.random.default_rng(12345)
    draws = 40000  # t = (delta + se Z) / (se sqrt(chi2_df / df)): the test a df-estimated SE runs
    scale = np.sqrt(rng.chisquare(df, draws) / df) if math.isfinite(df) else 1.0
    t = (delta + se * rng.normal(size=draws)) / (se * scale)
    crit = sps.t.ppf(1 - alpha / 2, df) if math.isfinite(df) else sps.norm.ppf(1 - alpha / 2)
    assert np.mean(np.abs(t) > crit) == pytest.approx(0.8, abs=0.01)


def test_mde_by_hand_and_edges() -> None:
    # normal limit: (z_{0.975} + z_{0.8}) se = (1.959964 + 0.841621) se, up to the far tail (< 1e-6)
    assert mde(1.0, math.inf) == pytest.approx(2.801585, abs=1e-5)
    assert mde(2.0, 8.0) == pytest.approx(2 * mde(1.0, 8.0))  # scales with the SE
    assert mde(1.0, 2.0) > mde(1.0, 8.0) > mde(1.0, math.inf)  # fewer df, larger MDE
    assert mde(0.0, 3.0) == 0.0 and math.isnan(mde(float("nan"), 3.0)) and math.isnan(mde(1.0, float("nan")))
    assert power(0.0, 0.68, 5.0) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        mde(0.68, 3.0, alpha=0.05, target=0.01)


def test_seeds_needed_round_trips_mde() -> None:
    plan = Plan(unit=2 * 0.7**2, df_per_seed=4.0)  # blocked, 5 arms: df = 4 (n - 1)
    for n in (2, 3, 5, 10, 30):
        var, df = satterthwaite([(plan.unit / n, 4.0 * (n - 1))])
        delta = mde(math.sqrt(var), df)
        assert seeds_needed(plan, delta) == n
        assert seeds_needed(plan, 0.97 * delta) > n
        assert seeds_needed(plan, 1.03 * delta) <= n


def test_seeds_needed_respects_the_image_floor() -> None:
    # paired, unit 0.68^2, no image part: 0.01 pp needs far beyond 1000 seeds; 100 pp needs 2
    plan = Plan(unit=0.68**2, df_per_seed=1.0)
    assert seeds_needed(plan, 0.01) is None and seeds_needed(plan, 0.0) is None
    assert seeds_needed(plan, 100.0) == 2
    # an image part of SE 0.3 pp: no number of seeds detects 0.5 pp at 80% power (needs 2.80 x 0.3 = 0.84)
    floored = Plan(unit=0.68**2, df_per_seed=1.0, var_img=0.3**2, df_img=1000.0)
    assert not floored.reachable(0.5) and seeds_needed(floored, 0.5) is None
    assert floored.reachable(1.0) and seeds_needed(floored, 1.0) > seeds_needed(plan, 1.0)
    holm4 = holm_first_alpha(0.05, 4)
    assert seeds_needed(plan, 1.0, holm4) > seeds_needed(plan, 1.0)  # Holm's alpha needs more seeds


def test_holm_first_alpha() -> None:
    assert holm_first_alpha(0.05, 6) == pytest.approx(0.05 / 6)
    with pytest.raises(ValueError):
        holm_first_alpha(0.05, 0)


# --- the test set's binomial noise ---------------------------------------------------------------------


def test_binomial_sd_by_hand() -> None:
    assert binomial_sd_pp(90.0, 10_000) == pytest.approx(0.3)  # 100 * sqrt(0.9 * 0.1 / 1e4)
    assert binomial_sd_pp(50.0, 100) == pytest.approx(5.0)  # 100 * 0.5 / 10
    assert binomial_sd_pp(83.2, 10_000) == pytest.approx(math.sqrt(0.832 * 0.168), rel=1e-12)  # 0.37387 pp
    assert binomial_sd_pp(100.0, 10_000) == 0.0
    with pytest.raises(ValueError):
        binomial_sd_pp(90.0, 0)
    with pytest.raises(ValueError):
        binomial_sd_pp(101.0, 100)


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
