"""The results table's wiring, pinned on a hand-built `collected` (issue 21): every statistic of a row is
recomputed here from the raw numbers with plain numpy/scipy formulas, independent of ablate.stats.

One backbone, a baseline and two attention arms, 3 shared seeds, 40 test images. The accuracies are
the per-image correctness means; the curves give a known time to the baseline's validation accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from ablate.records import encode_correct
from ablate.report.collect import Collected, _arm_frame
from ablate.report.tables import arm_table, seed_table, summary_view
from ablate.spec import load_study

SEEDS, M, MIN_EFFECT = (1, 2, 3), 40, 20.0
BASE, SE, SAM = "cnn/none", "cnn/se/after_relu/r16/s1-3", "cnn/sam/after_relu/s1-3"


def _correct() -> dict[str, np.ndarray]:
    """arm -> (seeds, images) correctness: the arms share image difficulty, SE is better on some images."""
    rng = np.random.default_rng(25)  # neither arm flagged, both with an image part
    easy = rng.random(M) < 0.6
    out = {}
    for arm, extra, flip in ((BASE, 0.0, 0.15), (SE, 0.35, 0.15), (SAM, 0.0, 0.3)):
        bonus = (rng.random(M) < extra)[None, :]  # images this arm gets right at every seed
        noise = rng.random((len(SEEDS), M)) < flip
        out[arm] = (easy[None, :] ^ noise) | bonus
    return out


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Collected:
    path = Path(tmp_path_factory.mktemp("tables")) / "w.yaml"
    path.write_text(yaml.safe_dump({
        "name": "w", "dataset": {"name": "synthetic", "train_size": 100, "test_size": M},
        "grid": {"backbones": ["cnn"], "attention": ["none", "se", "sam"], "positions": ["after_relu"],
                 "reductions": [16]},
        "seeds": list(SEEDS), "min_effect_pp": MIN_EFFECT, "recipe": {"epochs": 3}, "tuning": {"enabled": False}}))
    study = load_study(path)
    correct = _correct()
    runs, curves = [], []
    val = {BASE: [50.0, 60.0, 70.0], SE: [55.0, 72.0, 75.0], SAM: [40.0, 50.0, 65.0]}  # the same every seed
    for arm, y in correct.items():
        for i, seed in enumerate(SEEDS):
            runs.append({"arm": arm, "seed": seed, "acc": 100.0 * y[i].mean(), "test_correct": encode_correct(y[i]),
                         "hp_source": "fixed recipe (no tuning)", "train_s_per_epoch": 2.0,
                         "peak_mem_train_mib": 10.0, "recipe": "{}"})
            for epoch, v in enumerate(val[arm], start=1):
                curves.append({"arm": arm, "seed": seed, "epoch": epoch, "val_acc": v, "eval_acc": v,
                               "train_time_s": 2.0 * epoch})  # epoch e takes 2e s
    items = pd.DataFrame([{"arm": a.id, "seed": s, "status": "complete", "trial": 0, "reason": ""}
                          for a in study.arms for s in SEEDS])
    return Collected(study=study, arms=_arm_frame(study, {}), runs=pd.DataFrame(runs),
                     curves=pd.DataFrame(curves), iters=pd.DataFrame(columns=["arm", "seed", "step", "loss"]),
                     items=items)


def _two_way(x: np.ndarray) -> tuple[float, float, float]:
    """(MS_rows, MS_cols, MS_residual) of a rows x cols matrix, from the sums of squares."""
    r, c = x.shape
    grand = x.mean()
    ss_rows = c * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = r * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_res = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    return ss_rows / (r - 1), ss_cols / (c - 1), ss_res / ((r - 1) * (c - 1))


def _satterthwaite(terms: list[tuple[float, float]]) -> tuple[float, float]:
    total = sum(v for v, _ in terms)
    return total, total**2 / sum(v**2 / d for v, d in terms if v)


def _power(effect: float, se: float, df: float, alpha: float) -> float:
    crit = sps.t.ppf(1 - alpha / 2, df)
    return sps.nct.sf(crit, df, effect / se) + sps.nct.sf(crit, df, -effect / se)


def _seeds_for(effect: float, unit: float, fixed: list[tuple[float, float]], alpha: float) -> int:
    """The smallest k whose blocked test (3 arms: 2 (k - 1) df, plus the fixed image part) has 80% power."""
    for k in range(2, 1000):
        var, df = _satterthwaite([(unit / k, 2.0 * (k - 1)), *fixed])
        if _power(effect, math.sqrt(var), df, alpha) >= 0.8 - 1e-9:
            return k
    raise AssertionError("not reachable below 1000 seeds")


def test_primary_comparison_mde_and_seeds_needed_by_hand(collected: Collected) -> None:
    table = arm_table(collected).set_index("arm")
    y = _correct()
    acc = np.array([100 * y[a].mean(axis=1) for a in (BASE, SE, SAM)])  # 3 arms x 3 seeds
    _, _, ms_block = _two_way(acc)  # residual of accuracy = arm + seed: (3-1)(3-1) = 4 df
    n, holm_alpha = len(SEEDS), 0.05 / 2  # two comparisons: Holm's first step
    for row, arm in ((1, SE), (2, SAM)):
        d = acc[row] - acc[0]
        z = 100.0 * (y[arm].astype(float) - y[BASE].astype(float))
        _, ms_img, ms_res = _two_way(z)
        image = [(ms_img / (n * M), M - 1), (-ms_res / (n * M), (n - 1) * (M - 1))]
        var_img = max(ms_img - ms_res, 0.0) / (n * M)
        var, df = _satterthwaite([(2 * ms_block / n, 4.0), *(image if var_img > 0 else [])])
        r = table.loc[arm]
        assert r["test"] == "blocked" and r["diff"] == pytest.approx(d.mean())
        half = sps.t.ppf(0.975, df) * math.sqrt(var)
        assert (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
        assert r["p"] == pytest.approx(2 * sps.t.sf(abs(d.mean()) / math.sqrt(var), df))
        assert r["var_img"] == pytest.approx(var_img)
        # MDE: the effect the primary test detects with 80% power, by root-finding on the noncentral t
        for column, alpha in (("mde", 0.05), ("mde_holm", holm_alpha)):
            assert _power(r[column], math.sqrt(var), df, alpha) == pytest.approx(0.8, abs=1e-6)
        # seeds for 20 pp at Holm's first-step alpha: the seed part shrinks as 1/k, its df grows as 2 (k - 1)
        fixed = [(var_img, _satterthwaite(image)[1])] if var_img > 0 else []
        assert r["seeds_needed"] == _seeds_for(MIN_EFFECT, 2 * ms_block, fixed, holm_alpha)
        # the robustness check: this arm's own paired variance, n - 1 df, the same image part
        cvar, cdf = _satterthwaite([(d.var(ddof=1) / n, n - 1.0), *(image if var_img > 0 else [])])
        chalf = sps.t.ppf(0.975, cdf) * math.sqrt(cvar)
        assert (r["check_ci_low"], r["check_ci_high"]) == pytest.approx((d.mean() - chalf, d.mean() + chalf))
    low, high = sorted(table.loc[[SE, SAM], "p"])  # Holm with two comparisons: 2 p_(1), then max(2 p_(1), p_(2))
    assert sorted(table.loc[[SE, SAM], "p_holm"]) == pytest.approx([min(1, 2 * low), min(1, max(2 * low, high))])


def test_accuracy_ci_and_time_to_target_by_hand(collected: Collected) -> None:
    table = arm_table(collected).set_index("arm")
    y = _correct()
    for arm in (BASE, SE, SAM):
        x = 100.0 * y[arm].astype(float)
        acc = x.mean(axis=1)
        _, ms_img, ms_res = _two_way(x)
        n = len(SEEDS)
        var_img = max(ms_img - ms_res, 0.0) / (n * M)
        image = [(ms_img / (n * M), M - 1), (-ms_res / (n * M), (n - 1) * (M - 1))] if var_img > 0 else []
        var, df = _satterthwaite([(acc.var(ddof=1) / n, n - 1.0), *image])
        half = sps.t.ppf(0.975, df) * math.sqrt(var)
        r = table.loc[arm]
        assert (r["acc_ci_low"], r["acc_ci_high"]) == pytest.approx((acc.mean() - half, acc.mean() + half))
    # target: the baseline's mean final validation accuracy, 70 %. SE reaches it at epoch 2 (2 + 4 = 6 s of
    # training), the baseline at epoch 3 (12 s), SAM never (censored beyond its 3 epochs, 12 s)
    assert table.loc[SE, "target_val_acc"] == 70.0
    assert (table.loc[SE, "epochs_to_target"], table.loc[SE, "time_to_target_s"]) == (2, 6.0)
    assert (table.loc[BASE, "epochs_to_target"], table.loc[BASE, "time_to_target_s"]) == (3, 12.0)
    assert table.loc[SAM, "epochs_to_target_censored"] and table.loc[SAM, "reached_target"] == "0/3"


def test_per_seed_tests_are_per_seed_and_in_the_view(collected: Collected) -> None:
    from ablate.report.tables import comparisons

    found = comparisons(collected)
    seeds = seed_table(found)
    y = _correct()
    assert len(seeds) == 2 * len(SEEDS)
    for _, r in seeds.iterrows():
        i = SEEDS.index(r["seed"])
        a, b = y[r["arm"]][i], y[BASE][i]
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        assert (r["only_arm"], r["only_baseline"]) == (only_a, only_b)
        assert r["diff"] == pytest.approx(100 * (only_a - only_b) / M)
        assert r["p_mcnemar"] == pytest.approx(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue
                                               if only_a + only_b else 1.0)
    view = summary_view(arm_table(collected, found), (), MIN_EFFECT)
    assert list(view["arm"]) == [BASE, SE, SAM] and view.loc[0, "verdict"] == "baseline"


def test_runs_are_read_in_the_study_files_order_not_the_workers() -> None:
    """Two identical studies whose workers finished items in another order give the same frames: a
    mean summed in trial order is 88.225 or 88.22500000000001 (printed 88.22 or 88.23)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from ablate.report.collect import canonical_order

    arms = ["cnn/none", "cnn/cbam"]
    accs = {0: 88.26, 1: 88.17, 2: 88.19, 3: 88.28}

    def trial(number: int, arm: str, seed: int) -> optuna.trial.FrozenTrial:
        t = optuna.trial.create_trial(params={"arm": arm, "seed": seed}, value=accs[seed], distributions={
            "arm": CategoricalDistribution(arms), "seed": CategoricalDistribution([0, 1, 2, 3])})
        t.number = number
        return t

    items = [(a, s) for a in reversed(arms) for s in (1, 0, 3, 2)]
    first = canonical_order([trial(i, a, s) for i, (a, s) in enumerate(items)], arms)
    second = canonical_order([trial(i, a, s) for i, (a, s) in enumerate(reversed(items))], arms)
    order = [(t.params["arm"], t.params["seed"]) for t in first]
    assert order == [(a, s) for a in arms for s in range(4)] == [(t.params["arm"], t.params["seed"]) for t in second]
    assert [t.value for t in first] == [t.value for t in second]
