"""The three "small things that are wrong" of issue 18 (statistics.md 7c, last bullet), with numbers.

1. An A/A comparison (a target whose log-probs equal the base's) reported
   ``+0.000 [+0.000, +0.000] p < 0.001``: SE 0 gave t = inf. Now p = 1, and it resolves nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from cje.analysis import AnalysisConfig, run_analysis
from cje.context import AnalysisOptions
from cje.decision import best_policy, comparisons_vs_base, find_comparison
from cje.inference import paired_comparison, two_sided_p_value
from cje.simulation import simulate
from cje.summary_text import format_summary

# --- 1. A/A comparison --------------------------------------------------------------------------

def test_p_value_of_a_zero_difference_with_zero_se_is_one():
    assert two_sided_p_value(0.0, 0.0, 99) == 1.0
    assert two_sided_p_value(1e-17, 1e-18, 99) == 1.0  # rounding, not a difference
    assert two_sided_p_value(0.01, 0.0, 99) == 0.0  # a certain difference
    assert np.isnan(two_sided_p_value(0.01, float("nan"), 99))
    assert two_sided_p_value(0.02, 0.01, float("inf")) == pytest.approx(2 * special.ndtr(-2.0))
    assert two_sided_p_value(-0.02, 0.01, 10) == pytest.approx(2 * special.stdtr(10, -2.0))
    phi = np.random.default_rng(0).normal(0, 0.3, 200)
    ids = np.arange(200).astype(str)
    same = paired_comparison(0.6, ids, phi, np.full(5, 0.6), 0.6, ids, phi, np.full(5, 0.6))
    assert same["p_value"] == 1.0 and same["difference"] == same["ci_lower"] == same["ci_upper"] == 0.0


@pytest.mark.parametrize("estimator,coverage", [("calibrated-ips", 0.25), ("raw-ips", 1.0)])
def test_aa_comparison_through_the_api_has_p_one_and_is_not_resolved(tmp_path, estimator, coverage):
    """'twin' is the base policy (same log-probs on every row): its estimate, influence function
    and jackknife equal the base's, so twin - base = 0 with SE 0."""
    ds = simulate(600, seed=18, policies={"base": 0.0, "twin": 0.0})
    logged, _ = ds.write(tmp_path)
    result = run_analysis(AnalysisConfig(data=str(logged), estimator=estimator,
                                         options=AnalysisOptions(oracle_coverage=coverage)))
    payload = result.to_dict()
    twin = result.policies["twin"]
    assert twin.estimate == payload["metadata"]["base_policy"]["estimate"]
    c = find_comparison(payload, "twin", "base")
    assert c.se == 0.0 and c.p_value == 1.0
    assert c.difference == c.ci_lower == c.ci_upper == 0.0
    assert not c.separated and not comparisons_vs_base(payload)["twin"].separated
    text = format_summary(payload)
    assert "p = 1" in c.describe() and "< 0.001" not in text, text
    best = best_policy(payload)
    assert twin.reliable and set(best.candidates) == {"base", "twin"}  # a real two-way choice
    assert best.resolved is False and "NOT resolved" in best.describe()
