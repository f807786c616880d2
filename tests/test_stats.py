"""Seed statistics against hand-computed values and scipy's own implementations."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from ablate.stats import BETTER, SAME, UNTESTED, WORSE, holm, pareto_front, summarize, verdict, welch


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
