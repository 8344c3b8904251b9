"""Honest flags where surrogacy fails: a policy that games the judge (statistics.md 7b, 8; issue 10).

Scenario 'gaming': the target 'gamer' writes judge-gaming responses half the time (judge +2
logits, oracle -0.3), the base 10% of the time, so the importance weights see the gaming and
tr-cpo's full-weight label term can remove the bias. 'gaming-unseen': the base never games,
so no weight can see it; only probe labels on the target's fresh draws can. Both also have
an 'honest' target (shift 0.25, same gaming rate as the base), for which calibration is
slightly off too (its judge-score mix differs).

The contract: an estimate whose CI misses the truth is marked ``reliable: false`` or
corrected (covers) in >= 90% of replicates, and GOOD is given to a miss no more often than
the nominal 5%. With 2 policies x 200 replicates per cell, "no more often than 5%" is
tested as <= 0.05 + 3 binomial SE (0.083); the 90% as a share of unflagged misses <= 0.10.

With probe labels (the default config: 10% of each target's fresh draws) every estimator
meets both at every oracle coverage. Without probes the labels on the logged rows are the
only evidence: GOOD is still never given to a miss, but at 5-10% coverage (50-100 labels)
the weighted-label audit cannot detect a -0.1 transport bias reliably (measured power ~0.8
at 5%), so the 90% is required from 25% coverage on; docs/statistics.md lists the rest.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cje.estimators import estimator_names

from .conftest import binomial_band

GOOD_MISS_LIMIT = 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)


def _cells(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.group_by(["oracle_coverage", "estimator"]).agg(
        unflagged_miss=(pl.col("miss") & pl.col("reliable")).mean(),
        good_miss=((pl.col("status") == "GOOD") & pl.col("miss")).mean(),
        coverage=1 - pl.col("miss").mean(), n=pl.len())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gaming+probes", "gaming-unseen+probes", "gaming", "gaming-unseen"])
def test_misses_are_flagged_or_corrected(grid, name):
    cells = _cells(grid(name))
    assert set(cells.get_column("estimator")) == set(estimator_names())
    bad = []
    for row in cells.iter_rows(named=True):
        assert row["n"] == 400
        where = f"{row['estimator']} at coverage {row['oracle_coverage']}"
        if row["good_miss"] > GOOD_MISS_LIMIT:
            bad.append(f"{where}: GOOD and missing in {row['good_miss']:.3f} of replicates")
        need_flags = name.endswith("+probes") or row["oracle_coverage"] >= 0.25
        if need_flags and row["unflagged_miss"] > 0.10:
            bad.append(f"{where}: a reliable miss in {row['unflagged_miss']:.3f} of replicates")
    assert not bad, f"{name}: " + "; ".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gaming", "gaming+probes"])
def test_tr_cpo_corrects_gaming_the_weights_can_see(grid, name):
    """tr-cpo's label term, weighted by the full importance weight, removes the bias."""
    rows = grid(name).filter(pl.col("estimator") == "tr-cpo")
    for (coverage,), part in rows.group_by("oracle_coverage"):
        cov = 1 - part.get_column("miss").mean()
        assert 0.92 <= cov <= 0.98, (name, coverage, cov)


@pytest.mark.slow
def test_probe_labels_correct_the_direct_method_for_unseen_gaming(grid):
    """The gamer's probe-corrected estimates cover in [0.92, 0.98] at every oracle coverage; the
    honest target's within 3 binomial SE of 0.95 per coverage (its pooled correction at 10%
    labels covered 0.91-0.92 in two seed sets, SE / Monte-Carlo sd 0.95, the same ratio as
    the probes alone: a small shortfall of the interval there, not of the pooling)."""
    rows = grid("gaming-unseen+probes").filter(pl.col("estimator").is_in(["direct", "dr-cpo"]))
    for (estimator, coverage, policy), part in rows.group_by(["estimator", "oracle_coverage", "policy"]):
        cov = 1 - part.get_column("miss").mean()
        lo, hi = (0.92, 0.98) if policy == "gamer" else binomial_band(0.95, part.height)
        assert lo <= cov <= hi, (estimator, coverage, policy, cov)


@pytest.mark.slow
def test_without_probes_transport_resting_estimates_are_never_good_when_untested(grid):
    """GOOD is a claim that the assumptions were checked: an estimate resting on transport,
    judged by the weighted-label audit below 100% coverage, is at most WARNING unless the audit
    shows the bias small against its own interval."""
    rows = grid("gaming").filter(pl.col("estimator").is_in(["direct", "dr-cpo", "tmle", "mrdr"])
                                 & (pl.col("policy") == "gamer"))
    assert float((rows.get_column("status") == "GOOD").mean()) <= GOOD_MISS_LIMIT
