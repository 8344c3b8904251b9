"""Monte-Carlo checks of the core estimators on the simulator with known truth.

Fixed seeds; 200 replicates of n = 1,000 logged prompts per oracle coverage.
Tolerances come from Monte-Carlo error:
* bias: |mean(estimate) - truth| <= 3 * sd(estimates) / sqrt(R) per policy (3 MC SE,
  a 99.7% band per check);
* coverage: the 3 policies x 200 replicates = 600 intervals; a true 95% coverage
  gives a binomial SE of 0.009, so [0.92, 0.98] is about +-3 SE around 0.95;
* OUA matters: without the OUA term coverage is lower (by more than 3 binomial SE).
"""

from __future__ import annotations

import numpy as np
import pytest

from cje.analysis import analyze
from cje.context import AnalysisOptions
from cje.simulation import simulate

REPLICATES = 200
N = 1000
POLICIES = ("similar", "better", "worse")


def _replicates(estimator: str, coverage: float):
    out = {p: [] for p in POLICIES}
    for r in range(REPLICATES):
        ds = simulate(N, seed=10_000 + r)
        result = analyze(ds.logged, ds.fresh, estimator, AnalysisOptions(oracle_coverage=coverage, seed=r))
        for p in POLICIES:
            pr = result.policies[p]
            half = (pr.ci_upper - pr.ci_lower) / 2
            q = half / pr.se  # the t quantile used
            out[p].append((pr.estimate, pr.ci_lower, pr.ci_upper, pr.estimate - q * pr.se_without_oua,
                           pr.estimate + q * pr.se_without_oua, ds.truth[p]))
    return {p: np.array(v) for p, v in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["direct", "calibrated-ips"])
@pytest.mark.parametrize("coverage", [0.05, 0.10, 0.25])
def test_unbiased_and_honest_intervals(estimator, coverage):
    runs = _replicates(estimator, coverage)
    covered, covered_without_oua = [], []
    for policy, a in runs.items():
        est, lo, hi, lo0, hi0, truth = a.T
        mc_se = est.std(ddof=1) / np.sqrt(est.size)
        assert abs(est.mean() - truth[0]) <= 3 * mc_se, (policy, est.mean(), truth[0], mc_se)
        covered.append((lo <= truth) & (truth <= hi))
        covered_without_oua.append((lo0 <= truth) & (truth <= hi0))
    coverage_oua = float(np.mean(covered))
    coverage_plain = float(np.mean(covered_without_oua))
    assert 0.92 <= coverage_oua <= 0.98, coverage_oua
    binomial_se = np.sqrt(0.95 * 0.05 / (len(POLICIES) * REPLICATES))
    assert coverage_plain < coverage_oua - 3 * binomial_se, (coverage_plain, coverage_oua)


def _surrogacy_failure_runs(probe_coverage: float):
    rows = []
    for r in range(REPLICATES):
        ds = simulate(N, seed=50_000 + r, surrogacy=False)
        result = analyze(ds.logged, ds.fresh, "direct",
                         AnalysisOptions(oracle_coverage=0.25, seed=r, probe_coverage=probe_coverage))
        for p in POLICIES:
            pr = result.policies[p]
            rows.append((p, pr.estimate, pr.ci_lower, pr.ci_upper, ds.truth[p], tuple(pr.assumptions)))
    return rows


@pytest.mark.slow
def test_judge_not_sufficient_direct_misses_without_probes_and_is_corrected_with_them():
    """statistics.md 7b: with a judge that is not sufficient for the oracle, calibration on base rows
    shrinks every target toward the base. Without probe labels the direct method undercovers and
    says it rests on surrogacy; 10% probe labels on each target's fresh draws remove the bias."""
    plain = _surrogacy_failure_runs(0.0)
    covered = np.mean([lo <= t <= hi for _, _, lo, hi, t, _ in plain])
    assert covered < 0.92 - 3 * np.sqrt(0.95 * 0.05 / len(plain)), covered
    assert all(any("surrogacy" in a for a in assumptions) for *_, assumptions in plain)
    shifted = [e - t for p, e, _, _, t, _ in plain if p == "better"]
    assert np.mean(shifted) < -3 * np.std(shifted, ddof=1) / np.sqrt(len(shifted))  # shrunk toward base

    probed = _surrogacy_failure_runs(0.1)
    for policy in POLICIES:
        err = np.array([e - t for p, e, _, _, t, _ in probed if p == policy])
        assert abs(err.mean()) <= 3 * err.std(ddof=1) / np.sqrt(err.size), (policy, err.mean())
    covered = np.mean([lo <= t <= hi for _, _, lo, hi, t, _ in probed])
    assert 0.92 <= covered <= 0.98, covered
    assert all(any("probe labels" in a for a in assumptions) for *_, assumptions in probed)
