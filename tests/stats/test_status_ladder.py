"""The status ladder earns its word in both directions (statistics.md 7c, 8 "useful flags").

On healthy data at the default probe budget (config/config.yaml: analysis.probe_coverage
0.5) GOOD is reachable -- at least 80% of the estimates of every estimator whose
assumptions hold, at every oracle coverage -- and a false CRITICAL is rare (<= 1% per
estimate, the budget of the one decision rule). Where the judge is not a sufficient
surrogate for a target (judge gaming, a defect the judge cannot see; the base showing it
or never), a miss is flagged (CRITICAL) or corrected in >= 90% of replicates and GOOD is
given to a miss in <= 5%, with and without probes; where without probes nothing can tell,
GOOD is withheld. A ladder answering WARNING to everything fails the first half; one
answering GOOD to everything fails the second.

Grids: cje.sim.montecarlo.STANDARD_GRIDS (200 replicates x oracle coverage 0.05, 0.10,
0.25, 1.0 x every registered estimator, n = 1,000, fixed seeds). Tolerances are binomial:
a rate r measured over N estimates is compared with its bound b through
b +- 3 sqrt(b (1 - b) / N) (conftest.binomial_band), never with a printed number.
"""

from __future__ import annotations

import polars as pl
import pytest

from cje.estimators import estimator_names
from cje.sim.montecarlo import BROKEN_TARGETS, STANDARD_GRIDS

from .conftest import binomial_band

pytestmark = pytest.mark.slow

HEALTHY_WITH_PROBES = ("mild+probes", "strong+probes")
JUDGE_FAILURES = ("gaming", "gaming+probes", "gaming-unseen", "gaming-unseen+probes", "judge-blind-unseen",
                  "judge-blind-unseen+probes", "judge-blind-rare", "judge-blind-rare+probes")
# every registered estimator but naive, whose assumption (the judge is the metric) fails by design
CALIBRATED = [e for e in estimator_names() if e != "naive"]


def _healthy(frame: pl.DataFrame, scenario: str) -> pl.DataFrame:
    return frame.filter(~pl.col("policy").is_in(list(BROKEN_TARGETS.get(scenario, ()))))


@pytest.mark.parametrize("name", HEALTHY_WITH_PROBES)
@pytest.mark.parametrize("estimator", CALIBRATED)
def test_good_is_reachable_on_healthy_data_at_the_default_probe_budget(grid, name, estimator):
    spec = STANDARD_GRIDS[name]
    assert spec.probe_coverage == 0.5  # the default config's probe budget
    f = _healthy(grid(name), spec.scenario).filter(pl.col("estimator") == estimator)
    for cov in spec.coverages:
        g = f.filter(pl.col("oracle_coverage") == cov)
        good = float((g["status"] == "GOOD").mean())
        lo, _ = binomial_band(0.80, g.height)
        assert good >= lo, f"{name} {estimator} at coverage {cov}: GOOD for {good:.1%} of {g.height} healthy estimates"


@pytest.mark.parametrize("name", HEALTHY_WITH_PROBES + ("mild", "strong"))
def test_false_critical_is_rare_on_healthy_data(grid, name):
    """<= 1% of healthy estimates CRITICAL, per estimator (pooled over coverages and targets)."""
    spec = STANDARD_GRIDS[name]
    f = _healthy(grid(name), spec.scenario).filter(pl.col("estimator").is_in(CALIBRATED))
    for (estimator,), g in f.group_by(["estimator"]):
        critical = float((g["status"] == "CRITICAL").mean())
        _, hi = binomial_band(0.01, g.height)
        assert critical <= hi, f"{name} {estimator}: {critical:.2%} of {g.height} healthy estimates CRITICAL"


@pytest.mark.parametrize("name", HEALTHY_WITH_PROBES)
def test_intervals_stay_honest_with_the_probe_correction(grid, name):
    """CI coverage in [0.92, 0.98] for every calibrated estimator at every coverage (pooled over targets)."""
    spec = STANDARD_GRIDS[name]
    f = _healthy(grid(name), spec.scenario).filter(pl.col("estimator").is_in(CALIBRATED))
    for (estimator, cov), g in f.group_by(["estimator", "oracle_coverage"]):
        coverage = 1 - float(g["miss"].mean())
        assert 0.92 <= coverage <= 0.98, f"{name} {estimator} at {cov}: coverage {coverage:.3f} over {g.height}"


@pytest.mark.parametrize("name", JUDGE_FAILURES)
def test_misses_on_broken_targets_are_flagged_or_corrected_and_never_good(grid, name):
    """Per estimator, pooled over coverages: a miss is CRITICAL or does not happen in >= 90% of
    replicates (without probes, where only a not-GOOD is possible, in >= 90% it is not GOOD);
    GOOD given to a miss in <= 5%."""
    spec = STANDARD_GRIDS[name]
    broken = BROKEN_TARGETS[spec.scenario]
    f = grid(name).filter(pl.col("policy").is_in(list(broken)) & pl.col("estimator").is_in(CALIBRATED))
    for (estimator,), g in f.group_by(["estimator"]):
        good_miss = float((g["miss"] & (g["status"] == "GOOD")).mean())
        _, hi = binomial_band(0.05, g.height)
        assert good_miss <= hi, f"{name} {estimator}: GOOD given to a miss in {good_miss:.1%} of {g.height}"
        handled = float((~g["miss"] | (g["status"] != "GOOD")).mean())
        lo, _ = binomial_band(0.90, g.height)
        assert handled >= lo, f"{name} {estimator}: a miss flagged or corrected in only {handled:.1%}"


@pytest.mark.parametrize("name", ("judge-blind-unseen+probes", "gaming-unseen+probes", "judge-blind-rare+probes",
                                  "gaming+probes"))
def test_with_probes_a_miss_is_critical_or_corrected(grid, name):
    """With probes every estimate is corrected or compared with the probe-label mean: a miss
    that is not CRITICAL happens in <= 10% of replicates, per estimator."""
    spec = STANDARD_GRIDS[name]
    f = grid(name).filter(pl.col("policy").is_in(list(BROKEN_TARGETS[spec.scenario]))
                          & pl.col("estimator").is_in(CALIBRATED))
    for (estimator,), g in f.group_by(["estimator"]):
        unflagged = float((g["miss"] & (g["status"] != "CRITICAL")).mean())
        _, hi = binomial_band(0.10, g.height)
        assert unflagged <= hi, f"{name} {estimator}: a miss left unflagged in {unflagged:.1%} of {g.height}"


def test_missing_support_is_what_the_weights_cannot_hide(grid):
    """judge-blind-unseen without probes: every estimate that rests on the weights is CRITICAL
    for the defective target (its support check shows the missing mass); the others are not GOOD."""
    f = grid("judge-blind-unseen").filter(pl.col("policy") == "defective")
    for (estimator,), g in f.group_by(["estimator"]):
        if estimator in ("raw-ips", "calibrated-ips"):
            assert float((g["status"] == "CRITICAL").mean()) >= 0.95, estimator
        elif estimator != "naive":
            assert float((g["status"] == "GOOD").mean()) <= 0.05, estimator


@pytest.mark.parametrize("name", ("judge-blind-rare+probes", "gaming+probes", "gaming-unseen+probes",
                                  "judge-blind-unseen+probes"))
def test_probe_corrected_estimates_of_a_broken_target_are_honest_at_every_coverage(grid, name):
    """direct and the DR family carry the probe correction on a broken target: per oracle coverage,
    CI coverage within 3 binomial SE of 0.95 and mean SE / Monte-Carlo sd >= 0.85 (the sd of an
    sd over 200 replicates is 5%). At 100% coverage the DR family once added the probe correction
    to its logged label correction mean W (Y - g): the transport bias estimated twice, with the
    heavy-weight noise the influence function understates (judge-blind-rare: coverage 0.885-0.90,
    SE / MC sd 0.69-0.74)."""
    spec = STANDARD_GRIDS[name]
    corrected = [e for e in CALIBRATED if e not in ("raw-ips", "calibrated-ips")]
    f = grid(name).filter(pl.col("policy").is_in(list(BROKEN_TARGETS[spec.scenario]))
                          & pl.col("estimator").is_in(corrected))
    for (estimator, cov), g in f.group_by(["estimator", "oracle_coverage"]):
        coverage = 1 - float(g["miss"].mean())
        lo, hi = binomial_band(0.95, g.height)
        assert lo <= coverage <= max(hi, 0.99), f"{name} {estimator} at {cov}: coverage {coverage:.3f}"
        ratio = float(g["se"].mean()) / float(g["err"].std())
        assert ratio >= 0.85, f"{name} {estimator} at {cov}: mean SE / Monte-Carlo sd {ratio:.2f}"


PROBE_PAIRS = (("mild", "mild+probes"), ("strong", "strong+probes"), ("judge-blind-rare", "judge-blind-rare+probes"),
               ("judge-blind-unseen", "judge-blind-unseen+probes"))


@pytest.mark.parametrize("pair", PROBE_PAIRS, ids=lambda p: p[1])
def test_probes_do_not_cost_precision_where_transport_holds(grid, pair):
    """statistics.md 7c: with probes an estimate is never less precise than without them when
    transport holds. Per estimator and oracle coverage, the RMSE on the healthy targets with
    probes is at most 1.12 x the RMSE without (the ratio of two RMSEs over >= 600 estimates
    each has a Monte-Carlo SE of about 4%; 1.12 is 3 SE). The probe correction alone failed
    this with 10% probes: direct at 100% coverage 0.0126 against 0.0082 (judge-blind-rare);
    pooled with the weighted labels (cje.estimators.probes) it does not."""
    bare, probed = pair
    scenario = STANDARD_GRIDS[bare].scenario

    def rmse(frame):
        return (_healthy(frame, scenario).filter(pl.col("estimator").is_in(CALIBRATED))
                .group_by(["estimator", "oracle_coverage"]).agg(rmse=(pl.col("err") ** 2).mean().sqrt(), n=pl.len()))

    joined = rmse(grid(bare)).join(rmse(grid(probed)), on=["estimator", "oracle_coverage"], suffix="_probes")
    assert joined.height == len(CALIBRATED) * len(STANDARD_GRIDS[bare].coverages)
    worse = joined.filter(pl.col("rmse_probes") > 1.12 * pl.col("rmse"))
    assert worse.is_empty(), f"{probed}: probes cost precision in {worse.sort('rmse_probes').to_dicts()}"
