"""Double robustness where the weights can matter (statistics.md 8; issue 10).

Below 100% oracle coverage R = f(S) and an outcome model of S alone make the DR
correction zero, so "DR with wrong weights" held there by construction. Here the
rewards are the oracle labels (100% coverage, R = Y, 'mild' scenario), so the correction
W (Y - g) is active: dr-cpo and tmle must stay unbiased when either the outcome model
(a constant 0.5) or the weights (uniform) are deliberately wrong -- and, as a negative
control proving the test can fail, be biased when both are.

200 replicates of n = 1,000; policy 'better' (shift 0.25, truth 0.035 above the base).
Tolerance: |mean error| <= 3 Monte-Carlo SE; the negative control must be off by more
than 10 Monte-Carlo SE.
"""

from __future__ import annotations

import numpy as np
import pytest

from cje.estimators.context import AnalysisOptions, build_context
from cje.estimators.dr import DRCPOEstimator
from cje.estimators.outcome import ConstantOutcomeModel, IsotonicOutcomeModel
from cje.estimators.tmle import TMLEEstimator
from cje.sim.scenarios import simulate_scenario

REPLICATES, N, POLICY = 200, 1000, "better"


def uniform(ctx, policy):
    return np.ones(ctx.rows(policy).size)


CASES = {
    "wrong outcome model, right weights": (ConstantOutcomeModel(0.5), "raw"),
    "right outcome model, wrong weights": (IsotonicOutcomeModel(), uniform),
    "both wrong (negative control)": (ConstantOutcomeModel(0.5), uniform),
}


@pytest.fixture(scope="module")
def errors():
    out = {(case, name): [] for case in CASES for name in ("dr-cpo", "tmle")}
    for r in range(REPLICATES):
        ds = simulate_scenario("mild", N, seed=7_000_000 + r)
        ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=1.0, seed=r))
        for case, (model, weights) in CASES.items():
            for name, cls in (("dr-cpo", DRCPOEstimator), ("tmle", TMLEEstimator)):
                pe = cls(model, weights).estimate(ctx, POLICY)
                out[(case, name)].append(pe.estimate - ds.truth[POLICY])
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dr-cpo", "tmle"])
def test_unbiased_when_one_nuisance_is_wrong_and_biased_when_both_are(errors, name):
    for case in CASES:
        e = errors[(case, name)]
        mc_se = e.std(ddof=1) / np.sqrt(e.size)
        if case.startswith("both"):
            assert abs(e.mean()) > 10 * mc_se, (name, case, e.mean(), mc_se)
        else:
            assert abs(e.mean()) <= 3 * mc_se, (name, case, e.mean(), mc_se)


def test_the_correction_is_active_at_full_coverage_and_rests_on_either_nuisance():
    ds = simulate_scenario("mild", N, seed=17)
    ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=1.0))
    pe = DRCPOEstimator(weights="raw").estimate(ctx, POLICY)
    assert abs(pe.details["weighted_correction"]) > 0 and pe.details["max_abs_reward_minus_outcome"] > 0.01
    assert pe.rests_on == ["fresh_draws", "transport_or_overlap"]
