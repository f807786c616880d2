"""The primary intervals cover the true effect: simulated studies with known arm effects (issue 19).

Each simulated study is a backbone with k arms (arm 0 the baseline) trained on n shared seeds and
tested on m images drawn from a population. Image i is correct for arm a at seed s with
probability sigmoid(mu_a + b_s + e_as - d_i + c_ai + g_si): b_s a seed effect every arm shares (same
data order and initial weights), e_as the arm's own seed noise (SD tau_a), d_i the image's
difficulty, c_ai an arm x image interaction (an arm consistently better on some images), g_si a
seed x image interaction every arm shares. The true effect of arm a is the accuracy difference
expected over seeds *and* the image population, E sigmoid(mu_a + N(0, V_a)) - E sigmoid(mu_0 +
N(0, V_0)) with V the sum of the variances: a one-dimensional integral, computed by Gauss-Hermite
quadrature (no simulation). Coverage is counted per arm over 2000 studies, so the standard error of
a 95% coverage is 0.5 pp and the band 93-97% is four of them either side.

`python -m tests.test_coverage` prints every number the assertions read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from scipy import optimize as spo
from scipy.special import expit

from ablate import stats

REPS, CHUNK = 2000, 250
BAND = (0.93, 0.97)
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)


def expected_accuracy(mu: float, var: float) -> float:
    """E sigmoid(mu + X), X ~ N(0, var): the accuracy over seeds and the image population."""
    return float(np.sum(_WEIGHTS * expit(mu + math.sqrt(var) * _NODES)) / np.sum(_WEIGHTS))


@dataclass(frozen=True)
class Scenario:
    name: str
    mu: tuple[float, ...]  # arm 0 is the baseline
    tau: tuple[float, ...]  # each arm's own seed noise (logit SD)
    n: int = 3
    m: int = 1000
    sd_seed: float = 0.2  # b_s, shared by every arm
    sd_difficulty: float = 2.0  # d_i
    sd_arm_image: float = 0.4  # c_ai
    sd_seed_image: float = 0.8  # g_si, shared by every arm

    def variance(self, arm: int) -> float:
        return (self.sd_seed**2 + self.tau[arm] ** 2 + self.sd_difficulty**2 + self.sd_arm_image**2
                + self.sd_seed_image**2)

    def truth(self) -> np.ndarray:
        """True effects of arms 1..k-1 in pp."""
        acc = [expected_accuracy(mu, self.variance(a)) for a, mu in enumerate(self.mu)]
        return 100 * (np.array(acc[1:]) - acc[0])

    def draw(self, rng: np.random.Generator, reps: int) -> np.ndarray:
        """Per-image correctness (reps, k, n, m)."""
        k, n, m = len(self.mu), self.n, self.m
        logit = (np.asarray(self.mu)[None, :, None, None]
                 + rng.normal(0, self.sd_seed, (reps, 1, n, 1))
                 + rng.normal(0, 1, (reps, k, n, 1)) * np.asarray(self.tau)[None, :, None, None]
                 - rng.normal(0, self.sd_difficulty, (reps, 1, 1, m))
                 + rng.normal(0, self.sd_arm_image, (reps, k, 1, m))
                 + rng.normal(0, self.sd_seed_image, (reps, 1, n, m)))
        return rng.random(logit.shape) < expit(logit)


def null_mu(base_mu: float, tau: tuple[float, ...], scenario: Scenario) -> tuple[float, ...]:
    """Arm means with exactly no effect: each arm's mu solves E acc(arm) = E acc(baseline)."""
    target = expected_accuracy(base_mu, scenario.variance(0))
    out = [base_mu]
    for a in range(1, len(tau)):
        var = scenario.variance(a)
        out.append(float(spo.brentq(lambda mu, v=var: expected_accuracy(mu, v) - target, base_mu - 5, base_mu + 5,
                                    xtol=1e-12)))
    return tuple(out)


@dataclass
class Outcome:
    """Per arm: share of studies whose interval covered the truth, by method; and the family-wise error."""

    truth: np.ndarray
    covered: dict[str, np.ndarray] = field(default_factory=dict)
    flagged: np.ndarray | None = None
    any_verdict: float = math.nan
    mean_diff: np.ndarray | None = None
    diff_se: np.ndarray | None = None


def run(scenario: Scenario, reps: int = REPS, seed: int = 0, pooled_view: bool = False) -> Outcome:
    """Simulate `reps` studies and analyse each with ablate.stats exactly as the report does."""
    rng = np.random.default_rng(seed)
    truth = scenario.truth()
    k = len(scenario.mu) - 1
    hits: dict[str, list[np.ndarray]] = {"primary": [], "blocked": [], "check": [], "seeds only": [],
                                         "pooled images": []}
    flags, diffs, rejected = [], [], []
    for start in range(0, reps, CHUNK):
        correct = scenario.draw(rng, min(CHUNK, reps - start))
        acc = 100 * correct.mean(axis=-1)
        found = stats.design(acc, correct)
        p_primary = []
        for a, v in enumerate(found):
            t = truth[a]
            for name, (low, high) in (("primary", v.primary()[:2]), ("blocked", v.blocked()[:2]),
                                      ("check", v.check()[:2]),
                                      ("seeds only", stats.t_interval(v.diff, v.var_pooled, v.df_pooled)[:2])):
                hits[name].append((low <= t) & (t <= high))
            if pooled_view:  # the old second view: McNemar + image bootstrap over seeds x images pooled
                pooled = [stats.paired_bootstrap(c[a + 1].ravel(), c[0].ravel(), n_boot=1000, seed=i)
                          for i, c in enumerate(correct)]
                hits["pooled images"].append(np.array([c.ci_low <= t <= c.ci_high for c in pooled]))
            flags.append(v.heterogeneous())
            diffs.append(v.diff)
            p_primary.append(v.primary()[2])
        p = np.stack(p_primary, axis=-1)
        rejected += [any(q < stats.ALPHA for q in stats.holm(row)) for row in p]
    per_arm = {name: np.stack(h).reshape(-1, k, h[0].shape[0]).transpose(1, 0, 2).reshape(k, -1).mean(axis=1)
               for name, h in hits.items() if h}
    d = np.stack(diffs).reshape(-1, k, diffs[0].shape[0]).transpose(1, 0, 2).reshape(k, -1)
    flag = np.stack(flags).reshape(-1, k, flags[0].shape[0]).transpose(1, 0, 2).reshape(k, -1).mean(axis=1)
    return Outcome(truth, per_arm, flag, float(np.mean(rejected)), d.mean(axis=1), d.std(axis=1) / math.sqrt(reps))


MU0 = 2.6  # baseline accuracy about 81%
SEEDS_DOMINATE = Scenario("seed-to-seed spread of the effect dominates (n = 3)",
                          (MU0, MU0 + 0.1, MU0 - 0.1, MU0 + 0.2, MU0), (0.15,) * 5)
IMAGES_MATTER = Scenario("arm x image interaction matters (n = 5)", (MU0, MU0 + 0.05, MU0 - 0.05, MU0 + 0.1, MU0),
                         (0.04,) * 5, n=5, sd_arm_image=1.0)
NOISY_ARM = Scenario("arm 3's own seed SD 3x the others' (n = 3)", (MU0, MU0 + 0.1, MU0 - 0.1, MU0 + 0.2, MU0),
                     (0.15, 0.15, 0.15, 0.45, 0.15))
_NULL = Scenario("no effect (n = 3)", (MU0,) * 5, (0.15,) * 5)
NULL = Scenario(_NULL.name, null_mu(MU0, _NULL.tau, _NULL), _NULL.tau)
_NULL_NOISY = Scenario("no effect, arm 3's seed SD 3x (n = 3)", (MU0,) * 5, NOISY_ARM.tau)
NULL_NOISY = Scenario(_NULL_NOISY.name, null_mu(MU0, NOISY_ARM.tau, _NULL_NOISY), NOISY_ARM.tau)


def _in_band(values: np.ndarray) -> bool:
    return bool(np.all((values >= BAND[0]) & (values <= BAND[1])))


def _in_band_of_check(values: np.ndarray) -> bool:
    """The paired check has n - 1 = 2 df: Satterthwaite's df, raised by the well-estimated image part, makes it
    a little liberal there (about 94%), so its band starts a point lower."""
    return bool(np.all((values >= BAND[0] - 0.01) & (values <= BAND[1])))


@pytest.fixture(scope="module")
def seeds_dominate() -> Outcome:
    return run(SEEDS_DOMINATE, pooled_view=True)


def test_the_truth_is_what_the_estimator_estimates(seeds_dominate: Outcome) -> None:
    """The simulated mean difference converges to the quadrature truth (the truth is computed right)."""
    gap = np.abs(seeds_dominate.mean_diff - seeds_dominate.truth)
    assert np.all(gap < 4 * seeds_dominate.diff_se), (seeds_dominate.mean_diff, seeds_dominate.truth)
    assert np.abs(seeds_dominate.truth[:3]).min() > 0.5 and seeds_dominate.truth[3] == 0.0


def test_primary_intervals_cover_when_seeds_dominate(seeds_dominate: Outcome) -> None:
    assert _in_band(seeds_dominate.covered["primary"]), seeds_dominate.covered
    assert _in_band_of_check(seeds_dominate.covered["check"]), seeds_dominate.covered


def test_the_old_pooled_image_view_does_not_cover(seeds_dominate: Outcome) -> None:
    """Pooling seeds x images as independent outcomes ignores the seed-to-seed spread of the effect."""
    assert np.all(seeds_dominate.covered["pooled images"] < 0.85), seeds_dominate.covered


def test_primary_intervals_cover_when_images_matter() -> None:
    """With little seed noise and an arm x image interaction, the image component is what makes them cover."""
    out = run(IMAGES_MATTER, seed=1)
    assert _in_band(out.covered["primary"]), out.covered
    assert np.all(out.covered["seeds only"] < 0.92), out.covered  # a fixed test set's interval is too narrow


def test_a_much_noisier_arm_is_flagged_and_its_paired_check_covers() -> None:
    """The blocked model assumes equal seed spreads; an arm that breaks it is flagged (weakly, at n = 3), its
    primary then becomes its paired test, and the paired check covers for every arm."""
    out = run(NOISY_ARM, seed=2)
    assert _in_band_of_check(out.covered["check"]), out.covered
    assert out.flagged[2] > 4 * out.flagged[[0, 1, 3]].max(), out.flagged
    assert np.all(out.flagged[[0, 1, 3]] < 0.05), out.flagged
    assert out.covered["primary"][2] > out.covered["blocked"][2], out.covered  # the switch helps where it fires
    assert np.all(out.covered["primary"][[0, 1, 3]] >= BAND[0]), out.covered  # the quiet arms over-cover


@pytest.mark.parametrize("scenario", [NULL, NULL_NOISY], ids=["equal spreads", "one noisy arm"])
def test_family_wise_error_of_holm_verdicts_under_no_effect(scenario: Scenario) -> None:
    out = run(scenario, seed=3)
    assert np.all(np.abs(out.truth) < 1e-9)
    assert out.any_verdict <= stats.ALPHA + 2.5 * math.sqrt(stats.ALPHA * (1 - stats.ALPHA) / REPS), out.any_verdict


def main() -> None:
    """Print the coverage and error rates every assertion above reads (for the issue note)."""
    for scenario, pooled in ((SEEDS_DOMINATE, True), (IMAGES_MATTER, False), (NOISY_ARM, False), (NULL, False),
                             (NULL_NOISY, False)):
        out = run(scenario, seed=0, pooled_view=pooled)
        print(f"{scenario.name}: true effects {np.round(out.truth, 2)} pp")
        for name, values in out.covered.items():
            print(f"  95% interval coverage, {name:13s}: " + "  ".join(f"{v:.3f}" for v in values))
        print("  spread flag rate:                 " + "  ".join(f"{v:.3f}" for v in out.flagged))
        what = "family-wise error" if np.all(np.abs(out.truth) < 1e-9) else "power"
        print(f"  P(any Holm verdict) ({what}): {out.any_verdict:.4f}")


if __name__ == "__main__":
    main()
