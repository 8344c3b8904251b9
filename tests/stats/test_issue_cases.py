"""The five cases of issue 10 ("Honest under stress"), with the numbers they must now produce.

1. calibrated-ips under strong shift (simulate(), one target at shift 1.0, 100% labels): the
   SIMCal stack used to put 0.96 on the flat decreasing projection (seed 900118 here: 0.507 for
   a truth of 0.628, marked GOOD) and, over 300 replicates, to report an SE of 0.40 x the
   Monte-Carlo sd (coverage 0.885).
2. tr-cpo on the arena sample: its SE ignored its oracle uncertainty (sd 0.086 across oracle
   masks for `unhelpful`, reported SE 0.018) and stacked-dr put weight 1.0 on it.
3. direct at 100% oracle coverage dropped its calibration uncertainty (coverage 0.82-0.88) --
   the coverage part is in test_honest_intervals; here the OUA term itself.
4. dr-cpo / mrdr / tmle equal direct when R = f(S), and were sold as robust, with a WARNING
   from weights that contribute nothing.
5. a judge-gaming policy marked GOOD by direct, dr-cpo, stacked-dr and calibrated-ips although
   transport was never checked.
"""

from __future__ import annotations

import numpy as np
import pytest

from cje.analysis.run import AnalysisConfig, analyze_context, analyze_loaded, run_analysis
from cje.estimators.context import AnalysisOptions, build_context
from cje.estimators import get_estimator
from cje.sim.scenarios import simulate, simulate_scenario


def _far(seed):
    return simulate(1000, seed=seed, policies={"base": 0.0, "far": 1.0})


@pytest.mark.parametrize("seed", [900014, 900118, 900146])
def test_case1_simcal_never_picks_the_flat_wrong_direction(seed):
    ds = _far(seed)
    pr = analyze_loaded(ds.logged, ds.fresh, "calibrated-ips", AnalysisOptions(oracle_coverage=1.0)).policies["far"]
    assert pr.details["simcal_choice"] == "increasing"
    assert pr.details["simcal_oof_mse"]["decreasing"] >= pr.details["simcal_oof_mse"]["constant"] - 1e-9
    assert pr.ci_lower <= ds.truth["far"] <= pr.ci_upper, (pr.estimate, pr.ci_lower, pr.ci_upper)


@pytest.mark.slow
def test_case1_calibrated_ips_se_accounts_for_the_weight_fit_over_300_replicates():
    """Measured now: coverage 0.917, mean SE / MC sd 0.97 (raw-ips: 0.937, 0.96); before: 0.885, 0.40.
    Band: 0.95 +- 3 binomial SE over 300 replicates = [0.912, 0.988]; the SD of 300 draws has a
    relative SE of 4%, so mean SE / sd >= 0.85 is 3.5 SE below 1."""
    rows = []
    for seed in range(900_000, 900_300):
        ds = _far(seed)
        ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=1.0))
        pr = analyze_context(ctx, get_estimator("calibrated-ips")).policies["far"]
        rows.append((pr.estimate, pr.se, pr.ci_lower, pr.ci_upper, ds.truth["far"]))
    est, se, lo, hi, truth = np.array(rows).T
    coverage = np.mean((lo <= truth) & (truth <= hi))
    assert 0.912 <= coverage <= 0.988, coverage
    assert se.mean() / est.std(ddof=1) >= 0.85, (se.mean(), est.std(ddof=1))
    assert abs(est.mean() - truth[0]) <= 3 * est.std(ddof=1) / np.sqrt(est.size)


@pytest.mark.slow
def test_case2_tr_cpo_reports_its_oracle_uncertainty_on_the_arena_sample(arena_logged, arena_fresh):
    """Across 12 oracle masks at 25% coverage, tr-cpo's reported SE for `unhelpful` is at least the
    spread of its estimate across the masks (which is only the oracle part of its error), and
    stacked-dr never reports `unhelpful` as reliable with an interval that misses the truth."""
    estimates, ses = [], []
    for seed in range(12):
        config = AnalysisConfig(data=str(arena_logged), fresh_draws_dir=str(arena_fresh), estimator="tr-cpo",
                                options=AnalysisOptions(oracle_coverage=0.25, seed=seed))
        pr = run_analysis(config).policies["unhelpful"]
        estimates.append(pr.estimate)
        ses.append(pr.se)
        assert pr.status == "CRITICAL"
    assert np.median(ses) >= 0.8 * np.std(estimates, ddof=1), (np.median(ses), np.std(estimates, ddof=1))
    config = AnalysisConfig(data=str(arena_logged), fresh_draws_dir=str(arena_fresh), estimator="stacked-dr",
                            options=AnalysisOptions(oracle_coverage=0.25, seed=0))
    result = run_analysis(config)
    pr, truth = result.policies["unhelpful"], result.metadata["ground_truth"]["unhelpful"]["truth"]
    assert not pr.reliable or pr.ci_lower <= truth <= pr.ci_upper
    assert pr.details["stacking_weights"].get("tr-cpo", 0.0) < 0.5


def test_case3_direct_keeps_oua_at_full_coverage():
    ds = simulate_scenario("mild", 1000, seed=5)
    result = analyze_loaded(ds.logged, ds.fresh, "direct", AnalysisOptions(oracle_coverage=1.0))
    for pr in result.policies.values():
        assert pr.oracle_variance is not None and pr.oracle_variance > 0
        assert pr.se > pr.se_without_oua
    assert "still applies where the calibrator enters" in result.metadata["inference"]["oua"]


def test_case4_dr_equal_to_direct_says_so_and_its_weights_do_not_lower_the_status():
    ds = simulate_scenario("strong", 1000, seed=7)  # 'far' has raw ESS ~0.3: weights would WARN
    options = AnalysisOptions(oracle_coverage=0.25, probe_coverage=0.0)
    ctx = build_context(ds.logged, ds.fresh, options)
    direct = analyze_context(ctx, get_estimator("direct")).policies["far"]
    for name in ("dr-cpo", "mrdr", "tmle"):
        pr = analyze_context(ctx, get_estimator(name)).policies["far"]
        assert pr.estimate == pytest.approx(direct.estimate, abs=1e-9), name
        ledger = {a["id"]: a for a in pr.assumptions}
        assert set(ledger) == {"fresh_draws", "transport"}, name  # not 'overlap': the weights do nothing
        assert "this estimate is the direct method" in ledger["transport"]["statement"], name
        assert not any("either the outcome model or the weights" in a["statement"] for a in pr.assumptions)
        assert not any("ESS" in r for r in pr.reasons), pr.reasons


def test_case5_a_judge_gaming_policy_is_not_good_and_is_caught():
    """The gaming scenario: 'gamer' inflates its judge scores on half its responses while the oracle
    is 0.3 lower (truth 0.502). Without probes nothing that rests on transport is GOOD, and at 25%
    labels the weighted-label audit fails it; with probes direct corrects itself and covers."""
    ds = simulate_scenario("gaming", 1000, seed=11)
    truth = ds.truth["gamer"]
    plain = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=0.25, seed=11))
    for name in ("direct", "dr-cpo", "stacked-dr", "calibrated-ips", "raw-ips", "tmle"):
        pr = analyze_context(plain, get_estimator(name)).policies["gamer"]
        assert pr.estimate > truth + 0.05, (name, pr.estimate)  # the gaming bias is real
        assert pr.status == "CRITICAL" and not pr.reliable, (name, pr.status, pr.reasons)
    tr = analyze_context(plain, get_estimator("tr-cpo")).policies["gamer"]
    assert tr.ci_lower <= truth <= tr.ci_upper  # the full-weight label term corrects it
    probed = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=0.25, seed=11, probe_coverage=0.1))
    for name in ("direct", "dr-cpo"):
        pr = analyze_context(probed, get_estimator(name)).policies["gamer"]
        assert pr.ci_lower <= truth <= pr.ci_upper, (name, pr.estimate, pr.ci_lower, pr.ci_upper)
        # the failure is named: as a note (GOOD, the weighted labels pooled) or as the reason the
        # estimate is WARNING (its probe labels alone correct it)
        assert any("transport audit FAIL" in r or "calibration does not hold" in r for r in pr.reasons), pr.reasons
