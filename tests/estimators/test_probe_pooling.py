"""The transport correction pools probe and weighted-label residuals only where the weights
are shown to cover the target (cje.estimators.probes)."""

from __future__ import annotations

import numpy as np
import pytest

from cje.estimators import get_estimator
from cje.estimators.context import AnalysisOptions, build_context
from cje.estimators.probes import transport_correction
from cje.sim.scenarios import simulate_scenario


def _ctx(scenario: str, seed: int, coverage: float, probe: float):
    ds = simulate_scenario(scenario, 1000, seed=seed)
    return ds, build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=coverage, seed=seed,
                                                                  probe_coverage=probe))


def test_weighted_labels_are_pooled_with_design_weights_when_overlap_is_evidenced():
    _, ctx = _ctx("mild", 5, 1.0, 0.1)
    rows = ctx.rows("similar")
    corr = transport_correction(ctx, ctx.fresh["similar"], rows)
    d = corr.details
    m, n_eff = d["n_probe_labels"], d["pooled_label_effective_n"]
    assert m == 100 and n_eff > 500
    assert d["label_pool_weight"] == pytest.approx(n_eff / (n_eff + m))
    assert corr.delta == pytest.approx((1 - d["label_pool_weight"]) * d["probe_correction"]
                                       + d["label_pool_weight"] * d["label_correction"])
    # the influence is the same mix, over the logged rows
    assert corr.influence.shape == rows.shape
    assert [df for _, df in corr.df_parts] == [m - 1, pytest.approx(n_eff - 1)]


def test_missing_support_keeps_the_probes_alone():
    """judge-blind-unseen: the defective target puts 40% of its mass where the base never goes;
    the weighted labels cannot see the defect, so they must not dilute the probe correction."""
    _, ctx = _ctx("judge-blind-unseen", 5, 1.0, 0.1)
    corr = transport_correction(ctx, ctx.fresh["defective"], ctx.rows("defective"))
    assert corr.details["label_pool_weight"] == 0.0 and "overlap" in corr.details["label_pool_note"]
    assert corr.delta == corr.details["probe_correction"] < -0.05
    est = get_estimator("direct").estimate(ctx, "defective")
    assert "pooled" not in est.notes["random_labels"]


def test_no_probes_no_correction():
    _, ctx = _ctx("mild", 5, 0.25, 0.0)
    assert transport_correction(ctx, ctx.fresh["similar"], ctx.rows("similar")) is None
    est = get_estimator("direct").estimate(ctx, "similar")
    assert "transport" in est.rests_on and est.details["residual_correction"] == 0.0


def test_pooling_halves_the_cost_of_few_probes_on_one_dataset():
    """At 100% coverage with 100 probes, the pooled correction's SE is far below the probe
    residual's alone (1,000 weighted labels carry most of the evidence)."""
    _, ctx = _ctx("mild", 9, 1.0, 0.1)
    rows = ctx.rows("similar")
    corr = transport_correction(ctx, ctx.fresh["similar"], rows)
    se_pooled = np.std(corr.influence, ddof=1) / np.sqrt(rows.size)
    probe_part = corr.df_parts[0][0] / (1 - corr.details["label_pool_weight"])
    se_probe = np.std(probe_part, ddof=1) / np.sqrt(rows.size)
    assert se_pooled < 0.6 * se_probe
