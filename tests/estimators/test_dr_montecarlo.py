"""Monte-Carlo checks of the doubly robust family on the simulator with known truth.

Fixed seeds; R = 200 replicates of n = 1,000 logged prompts (one fresh draw per
prompt and target) per setting, in memory (``build_context`` + the estimator
classes + ``cje.inference.interval``, exactly what ``analyze`` applies).
Tolerances come from Monte-Carlo error:

* bias: |mean(estimate) - truth| <= 3 * sd(estimates) / sqrt(R) per policy and
  estimator (3 MC SE). Measured before setting it (these seeds): the largest
  |z| is 1.9 for the calibration-based estimators (isotonic boundary bias, about
  0.001) and 0.9 for tr-cpo, whose label term removes it.
* coverage: 3 policies x 200 replicates = 600 intervals pooled per estimator and
  oracle coverage; a true 95% gives a binomial SE of 0.009, so the required band
  [0.92, 0.98] is about +-3 SE. Measured: 0.940-0.960 (docs/estimators.md).
* stacked-dr SE: per replicate d = SE(stacked) - min_j SE(component j);
  mean(d) <= 3 * sd(d) / sqrt(n_d) (no larger than the smallest component SE up
  to Monte-Carlo error).
* TMLE targeting: under a constant outcome model the untargeted direct part is
  the constant; TMLE must move away from it by more than 10 MC SE and land within
  3 MC SE of the truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from cje.context import AnalysisOptions, build_context
from cje.estimators.dr import DRCPOEstimator, MRDREstimator, OCDRCPOEstimator, TRCPOEstimator
from cje.estimators.outcome import ConstantOutcomeModel, IsotonicOutcomeModel
from cje.estimators.stacked import StackedDREstimator
from cje.estimators.tmle import TMLEEstimator
from cje.inference import interval
from cje.simulation import simulate

REPLICATES = 200
N = 1000
POLICIES = ("similar", "better", "worse")
ALL_SIX = ("dr-cpo", "mrdr", "tmle", "oc-dr-cpo", "tr-cpo", "stacked-dr")
COMPONENTS = ("dr-cpo", "mrdr", "tmle", "oc-dr-cpo", "tr-cpo")


def _estimators(outcome_model=None, weights="calibrated") -> dict:
    model = outcome_model or IsotonicOutcomeModel()  # one instance: fits are shared through the cache
    return {"dr-cpo": DRCPOEstimator(model, weights), "mrdr": MRDREstimator(model, weights),
            "tmle": TMLEEstimator(model, weights), "oc-dr-cpo": OCDRCPOEstimator(model, weights),
            "tr-cpo": TRCPOEstimator(model, weights), "stacked-dr": StackedDREstimator(model, weights)}


def _run(coverage: float, seed0: int, names=ALL_SIX, outcome_model=None, weights="calibrated") -> dict:
    """{(policy, estimator): array R x (estimate, se, ci_lower, ci_upper, truth, direct_part_untargeted)}."""
    estimators = {k: v for k, v in _estimators(outcome_model, weights).items() if k in names}
    out = {}
    for r in range(REPLICATES):
        ds = simulate(N, seed=seed0 + r)
        ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=coverage, seed=r))
        for policy in POLICIES:
            for name, est in estimators.items():
                pe = est.estimate(ctx, policy)
                ci = interval(pe.estimate, pe.influence, pe.jackknife)
                untargeted = pe.details.get("direct_part_untargeted", np.nan)
                out.setdefault((policy, name), []).append(
                    (pe.estimate, ci.se, ci.ci_lower, ci.ci_upper, ds.truth[policy], untargeted))
    return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module", params=[0.05, 0.10, 0.25], ids=lambda c: f"coverage{c}")
def both_right(request):
    """Both nuisances right: default isotonic outcome model, calibrated weights, surrogacy holds."""
    return request.param, _run(request.param, seed0=31_000)


def _assert_unbiased(runs: dict, names) -> None:
    for (policy, name), a in runs.items():
        if name not in names:
            continue
        est, truth = a[:, 0], a[0, 4]
        mc_se = est.std(ddof=1) / np.sqrt(est.size)
        assert abs(est.mean() - truth) <= 3 * mc_se, (policy, name, est.mean(), truth, mc_se)


@pytest.mark.slow
def test_all_six_unbiased_when_both_nuisances_right(both_right):
    _, runs = both_right
    _assert_unbiased(runs, ALL_SIX)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dr-cpo", "tmle", "stacked-dr"])
def test_interval_coverage(both_right, name):
    coverage, runs = both_right
    hits = np.concatenate([(a[:, 2] <= a[:, 4]) & (a[:, 4] <= a[:, 3])
                           for (p, n), a in runs.items() if n == name])
    assert hits.size == len(POLICIES) * REPLICATES
    assert 0.92 <= hits.mean() <= 0.98, (name, coverage, hits.mean())


@pytest.mark.slow
def test_stacked_se_not_above_smallest_component(both_right):
    _, runs = both_right
    for policy in POLICIES:
        smallest = np.min(np.column_stack([runs[(policy, c)][:, 1] for c in COMPONENTS]), axis=1)
        d = runs[(policy, "stacked-dr")][:, 1] - smallest
        assert d.mean() <= 3 * d.std(ddof=1) / np.sqrt(d.size) + 1e-12, (policy, d.mean(), d.std())


@pytest.mark.slow
def test_double_robustness_wrong_outcome_model_right_weights():
    """g = 0.5 everywhere (deliberately wrong); weights calibrated (right)."""
    runs = _run(0.25, seed0=47_000, names=("dr-cpo", "tmle"), outcome_model=ConstantOutcomeModel(0.5))
    _assert_unbiased(runs, ("dr-cpo", "tmle"))


@pytest.mark.slow
def test_double_robustness_wrong_weights_right_outcome_model():
    """W = 1 for every row (deliberately wrong: the target differs from the base); g isotonic (right)."""
    def uniform_weights(ctx, policy):
        return np.ones(ctx.rows(policy).size)

    runs = _run(0.25, seed0=53_000, names=("dr-cpo", "tmle"), weights=uniform_weights)
    _assert_unbiased(runs, ("dr-cpo", "tmle"))


@pytest.mark.slow
def test_tmle_differs_from_untargeted_direct_under_wrong_outcome_model():
    runs = _run(0.25, seed0=59_000, names=("tmle",), outcome_model=ConstantOutcomeModel(0.5))
    for policy in POLICIES:
        a = runs[(policy, "tmle")]
        est, truth, untargeted = a[:, 0], a[0, 4], a[:, 5]
        mc_se = est.std(ddof=1) / np.sqrt(est.size)
        assert np.allclose(untargeted, 0.5)
        assert abs(est.mean() - untargeted.mean()) > 10 * mc_se, (policy, est.mean())
        assert abs(est.mean() - truth) <= 3 * mc_se, (policy, est.mean(), truth)


@pytest.mark.slow
def test_surrogacy_failure_is_named_without_probes_and_corrected_with_them():
    """statistics.md 7b: the judge is not sufficient (E[Y | S] differs by policy).

    Without probe labels every DR estimate misses in the predicted direction (measured
    bias about -0.019 for 'better', +0.013 for 'worse': shrinkage toward the base, > 10
    MC SE) and says it rests on surrogacy; with 10% probe labels on the target's fresh
    draws the residual correction removes the bias (within 3 MC SE) and the output
    names the correction instead.
    """
    names = ("dr-cpo", "tmle", "stacked-dr")
    estimators = {k: v for k, v in _estimators().items() if k in names}
    errors = {}
    for r in range(REPLICATES):
        ds = simulate(N, seed=61_000 + r, surrogacy=False)
        for probe in (0.0, 0.1):
            ctx = build_context(ds.logged, ds.fresh,
                                AnalysisOptions(oracle_coverage=0.25, seed=r, probe_coverage=probe))
            for name, est in estimators.items():
                pe = est.estimate(ctx, "better")
                errors.setdefault((probe, name), []).append(pe.estimate - ds.truth["better"])
                rests_on_surrogacy = any(a.startswith("surrogacy") for a in pe.assumptions)
                assert rests_on_surrogacy == (probe == 0.0), (name, pe.assumptions)
    for (probe, name), e in errors.items():
        e = np.asarray(e)
        mc_se = e.std(ddof=1) / np.sqrt(e.size)
        if probe == 0.0:
            assert e.mean() < -10 * mc_se, (name, e.mean(), mc_se)  # shrunk toward the base
        else:
            assert abs(e.mean()) <= 3 * mc_se, (name, e.mean(), mc_se)
