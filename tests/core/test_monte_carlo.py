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
