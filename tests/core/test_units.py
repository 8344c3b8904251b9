"""Unit checks of the core building blocks against their defining formulas."""

from __future__ import annotations

import numpy as np
import pytest

from cje.stats.calibration import calibrate, fit_isotonic, pava
from cje.stats.oracle_mask import mask_oracle_labels
from cje.checks.audits import transport_audit
from cje.checks.status import policy_status
from cje.stats.diagnostics import bhattacharyya_overlap, ess_fraction, hill_tail_index
from cje.errors import InputError
from cje.stats.folds import assign_folds, stable_hash
from cje.stats.inference import interval, oua_variance, se_from_influence
from cje.stats.weights import clip_weights, hajek_weights, simcal_weights, simplex_min_variance


def test_stable_hash_is_fnv1a_with_avalanche_and_stable():
    h = stable_hash(np.array(["a", "arena_1", "ü"]))
    assert h.dtype == np.uint64
    assert np.array_equal(h, stable_hash(np.array(["a", "arena_1", "ü"])))
    assert len(set(h.tolist())) == 3


def test_folds_are_deterministic_balanced_and_seed_dependent():
    ids = np.array([f"p{i}" for i in range(1000)])
    labelled = np.zeros(1000, bool)
    labelled[::10] = True
    f = assign_folds(ids, 5, seed=0, labelled=labelled)
    assert np.array_equal(f, assign_folds(ids, 5, seed=0, labelled=labelled))
    assert not np.array_equal(f, assign_folds(ids, 5, seed=1, labelled=labelled))
    assert set(np.bincount(f[labelled], minlength=5).tolist()) == {20}
    assert np.bincount(f, minlength=5).min() > 150


def test_hajek_weights_mean_one_and_stable_for_huge_log_ratios():
    w = hajek_weights(np.array([-1000.0, -1001.0, -1002.0]), np.array([-5.0, -5.0, -5.0]))
    assert w.mean() == pytest.approx(1.0)
    assert w[0] / w[1] == pytest.approx(np.e)


def test_clip_weights_renormalises():
    w = clip_weights(np.array([0.5, 0.5, 299.0, 0.0]) / 75.0, clip=2.0)
    assert w.mean() == pytest.approx(1.0)


def test_simplex_min_variance_closed_form_and_qp_agree():
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    a2 = simplex_min_variance(cov)
    assert a2 == pytest.approx([0.25, 0.75])
    cov3 = np.array([[2.0, 0.5, 0.3], [0.5, 1.0, 0.9], [0.3, 0.9, 4.0]])
    a3 = simplex_min_variance(cov3)
    grid = np.array([(x, y, 1 - x - y) for x in np.linspace(0, 1, 401) for y in np.linspace(0, 1, 401)
                     if x + y <= 1])
    brute = np.einsum("ij,jk,ik->i", grid, cov3, grid).min()
    assert a3.min() >= 0 and a3.sum() == pytest.approx(1)
    assert a3 @ cov3 @ a3 <= brute + 1e-12


def test_simcal_admits_only_a_projection_that_beats_the_constant_and_the_other_direction():
    rng = np.random.default_rng(3)
    s = rng.uniform(size=4000)
    folds = rng.integers(0, 5, 4000)
    w = np.exp(1.5 * (s - 0.5) + rng.normal(0, 0.5, 4000))
    w /= w.mean()
    res = simcal_weights(w, s, s, folds, 5)
    assert res.choice == "increasing" and res.weights.mean() == pytest.approx(1.0)
    assert res.oof_mse["increasing"] < res.oof_mse["constant"] < res.oof_mse["decreasing"] + 1e-12
    # weights unrelated to S: no projection predicts them out of fold; the raw weights are kept
    # (a flat projection would be the base policy's mean, never a silent flat fallback)
    noise = np.exp(rng.normal(0, 0.8, 4000))
    res = simcal_weights(noise / noise.mean(), s, s, folds, 5)
    assert res.choice == "raw" and np.allclose(res.weights, noise / noise.mean())


def test_simcal_direction_is_stable_under_heavy_tails():
    """statistics.md 4 (revised): at shift 1.0 (raw ESS ~0.3, Hill ~2.6) the old stack put 0.96 on the
    flat decreasing projection for some seeds (900118: 0.507 for a truth of 0.628). Over 100 such
    datasets the choice is never 'decreasing' and the estimate stays within 3 of its own SEs."""
    from cje.analysis.run import analyze_context
    from cje.estimators.context import AnalysisOptions, build_context
    from cje.estimators import get_estimator
    from cje.sim.scenarios import simulate

    for seed in [900014, 900024, 900118, 900146, 900276] + list(range(900300, 900395)):
        ds = simulate(1000, seed=seed, policies={"base": 0.0, "far": 1.0})
        ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=1.0))
        pr = analyze_context(ctx, get_estimator("calibrated-ips")).policies["far"]
        assert pr.details["simcal_choice"] != "decreasing", seed
        assert abs(pr.estimate - ds.truth["far"]) <= 3.5 * pr.se, (seed, pr.estimate, pr.se)


def test_pava_is_scipys_isotonic_regression_bit_for_bit():
    from scipy.optimize import isotonic_regression

    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 50, 400):
        y = rng.normal(size=size)
        y[rng.random(size) < 0.2] = 0.25  # ties
        w = rng.uniform(0.01, 3.0, size)
        for increasing in (True, False):
            got = pava(y, w, increasing)
            want = isotonic_regression(y, weights=w, increasing=increasing).x
            assert got.view(np.int64).tolist() == want.view(np.int64).tolist(), (size, increasing)
    assert pava(np.array([3.0, 1.0, 2.0]), np.ones(3)).tolist() == [2.0, 2.0, 2.0]


def test_isotonic_fit_is_monotone_and_bounded():
    x = np.linspace(0, 1, 50)
    f = fit_isotonic(x, np.r_[np.ones(25), np.zeros(25)] * 2 - 0.5)
    v = f(np.linspace(-1, 2, 100))
    assert np.all(np.diff(v) >= 0) and v.min() >= 0 and v.max() <= 1


def test_calibration_reports_oof_metrics_and_refuses_few_labels():
    rng = np.random.default_rng(0)
    s = rng.uniform(size=300)
    y = np.clip(s + rng.normal(0, 0.1, 300), 0, 1)
    labelled = np.ones(300, bool)
    folds = rng.integers(0, 5, 300)
    cal = calibrate(s, y, labelled, folds, 5)
    assert cal.n_oracle == 300 and 0.05 < cal.oof_rmse < 0.15 and cal.oof_r2 > 0.7
    assert np.all(np.diff(cal.predict(np.linspace(0, 1, 20))) >= 0)
    labelled[9:] = False
    with pytest.raises(InputError, match="only 9 oracle labels"):
        calibrate(s, y, labelled, folds, 5)


def test_calibration_warns_on_inverted_judge():
    rng = np.random.default_rng(1)
    s = rng.uniform(size=200)
    cal = calibrate(s, 1 - s, np.ones(200, bool), rng.integers(0, 5, 200), 5)
    assert any("inverted" in w for w in cal.warnings) and any("constant" in w for w in cal.warnings)


def test_auto_calibration_records_its_choice():
    rng = np.random.default_rng(2)
    s = rng.uniform(size=400)
    y = np.clip(s + rng.normal(0, 0.1, 400), 0, 1)
    cal = calibrate(s, y, np.ones(400, bool), rng.integers(0, 5, 400), 5, mode="auto",
                    covariates=rng.normal(size=400))
    assert cal.auto_choice["chosen"] in ("monotone", "two_stage") and cal.mode == cal.auto_choice["chosen"]


def test_oracle_mask_counts_and_seed():
    labels = np.where(np.arange(100) < 60, 0.5, np.nan)
    m = mask_oracle_labels(labels, 0.25, seed=4)
    assert m.used.sum() == 25 and m.held_out.sum() == 35 and m.used_coverage == 0.25
    assert np.array_equal(m.used, mask_oracle_labels(labels, 0.25, seed=4).used)
    m_all = mask_oracle_labels(labels, 0.9, seed=4)
    assert m_all.used.sum() == 60 and "asks for 90 labels" in m_all.warning


def test_oua_uses_the_sum_formula_and_interval_widens():
    psi = np.array([0.50, 0.52, 0.48, 0.51, 0.49])
    assert oua_variance(psi) == pytest.approx(4 / 5 * np.sum((psi - psi.mean()) ** 2))
    phi = np.random.default_rng(0).normal(0, 0.3, 400)
    assert se_from_influence(phi) == pytest.approx(phi.std(ddof=1) / 20)
    with_oua = interval(0.5, phi, psi)
    without = interval(0.5, phi, None)
    assert with_oua.se > without.se and with_oua.df < without.df
    assert with_oua.ci_upper - with_oua.ci_lower > without.ci_upper - without.ci_lower


def test_diagnostics_formulas():
    assert ess_fraction(np.ones(10)) == pytest.approx(1.0)
    assert ess_fraction(np.r_[10.0, np.zeros(9)]) == pytest.approx(0.1)
    pareto = (np.random.default_rng(0).pareto(1.5, 20000) + 1)
    assert hill_tail_index(pareto) == pytest.approx(1.5, rel=0.15)
    assert bhattacharyya_overlap(np.full(10, 0.1), np.full(10, 0.9)) == 0
    assert bhattacharyya_overlap(np.linspace(0, 1, 100), np.linspace(0, 1, 100)) == pytest.approx(1)
    audit = transport_audit(np.full(50, 0.2) + np.random.default_rng(0).normal(0, 0.05, 50), np.full(50, 0.5))
    assert audit["status"] == "FAIL"


def test_status_ladder():
    checked = [{"id": "overlap", "status": "PASS", "evidence": ""}, {"id": "fresh_draws", "status": "DESIGN",
                                                                      "evidence": ""}]
    assert policy_status(assumptions=checked, overlap=0.9, drop_fraction=0.0).status == "GOOD"
    untested = checked + [{"id": "transport", "status": "UNTESTED", "evidence": "no labels"}]
    s = policy_status(assumptions=untested, overlap=0.9, drop_fraction=0.0)
    assert s.status == "WARNING" and s.reliable and "--probe-coverage" in s.reasons[0]
    failed = checked + [{"id": "transport", "status": "FAIL", "evidence": "mean residual -0.2"}]
    s = policy_status(assumptions=failed, overlap=0.9, drop_fraction=0.0)
    assert s.status == "CRITICAL" and not s.reliable
    # judge-score overlap speaks to transport: it lowers estimates that rest on it ...
    on_transport = checked + [{"id": "transport", "status": "PASS", "evidence": ""}]
    s = policy_status(assumptions=on_transport, overlap=0.4, drop_fraction=0.0)
    assert s.status == "CRITICAL" and not s.reliable and "overlap" in s.reasons[0]
    assert policy_status(assumptions=on_transport, overlap=0.7, drop_fraction=0.0).status == "WARNING"
    # ... and not those that correct with probe labels (they do not rest on transport)
    assert policy_status(assumptions=checked, overlap=0.6, drop_fraction=0.0).status == "GOOD"
    assert policy_status(assumptions=checked, overlap=0.4, drop_fraction=0.0).status == "WARNING"
    assert policy_status(assumptions=checked, overlap=0.9, drop_fraction=0.2).status == "WARNING"
    naive = [{"id": "judge_is_metric", "status": "UNTESTED", "evidence": "too few labels"}]
    assert policy_status(assumptions=naive, overlap=0.9, drop_fraction=0.0).status == "CRITICAL"
    # a failed check that names no assumption of the ledger (the estimate vs the probe-label mean)
    vs_probes = {"check": "estimate_vs_probe_mean", "status": "FAIL", "difference": -0.1, "ci_lower": -0.15,
                 "ci_upper": -0.05, "p_value": 1e-5, "assumptions": []}
    s = policy_status(assumptions=checked, overlap=0.9, drop_fraction=0.0, checks=[vs_probes])
    assert s.status == "CRITICAL" and "estimate_vs_probe_mean" in s.reasons[0]


def test_audit_verdict_is_an_equivalence_test():
    from cje.checks.audits import Audit, audit_verdict

    tight = Audit("probes", 0.001, 0.002, -0.003, 0.005, 400, 0.05)
    assert audit_verdict(tight, se_estimate=0.01).status == "PASS"      # TOST inside +-min(0.05, 0.01)
    assert audit_verdict(tight, se_estimate=0.004).status == "UNTESTED"  # the estimate's own SE is smaller
    wide = Audit("probes", 0.0, 0.03, -0.06, 0.06, 20, 0.05)
    assert audit_verdict(wide, se_estimate=0.01).status == "UNTESTED"    # too few labels to tell is not a pass
    assert not audit_verdict(wide, se_estimate=0.01).pass_reachable
    biased = Audit("probes", -0.03, 0.005, -0.04, -0.02, 400, 0.05)
    assert audit_verdict(biased, se_estimate=0.01).status == "FAIL"      # a bias larger than the estimate's SE
    assert audit_verdict(biased, se_estimate=0.05).status == "PASS"      # ... but small against a wide interval


def test_one_decision_rule_for_every_check():
    from scipy import stats

    from cje.checks.audits import CHECK_ALPHA, CHECKS_PER_ESTIMATE, decide

    assert CHECK_ALPHA * CHECKS_PER_ESTIMATE <= 0.01  # the false-CRITICAL budget per estimate
    z_fail = stats.norm.ppf(1 - CHECK_ALPHA / 2)
    # significant at the fixed level and material: FAIL; just below the level: not FAIL, whatever --level says
    assert decide(0.1, 0.1 / (z_fail + 0.01), float("inf"), 0.01).status == "FAIL"
    assert decide(0.1, 0.1 / (z_fail - 0.01), float("inf"), 0.01).status == "UNTESTED"
    # significant but immaterial (smaller than the tolerance): not a FAIL
    assert decide(0.005, 0.001, float("inf"), 0.01).status != "FAIL"
    # non-significance is no evidence: a wide check is UNTESTED, never PASS
    v = decide(0.0, 0.05, float("inf"), 0.01)
    assert v.status == "UNTESTED" and not v.pass_reachable
    assert v.detectable_bias == pytest.approx((z_fail + stats.norm.ppf(0.8)) * 0.05)
    # a zero difference with zero SE (an A/A comparison) has p = 1 and PASSes
    v = decide(0.0, 0.0, float("inf"), 0.01)
    assert v.p_value == 1.0 and v.status == "PASS"
    assert decide(0.02, 0.0, float("inf"), 0.01).status == "FAIL"


def test_probe_and_weighted_label_audits_are_pooled():
    from cje.checks.audits import Audit, pool_audits

    probe = Audit("probes", 0.02, 0.02, -0.02, 0.06, 100, 0.05, df=99.0)
    label = Audit("weighted_labels", -0.01, 0.01, -0.03, 0.01, 200, 0.05, df=199.0)
    pooled = pool_audits([probe, label], 0.95)
    assert pooled.source == "pooled" and pooled.n == 300
    assert pooled.delta == pytest.approx((0.02 / 0.02 ** 2 - 0.01 / 0.01 ** 2) / (1 / 0.02 ** 2 + 1 / 0.01 ** 2))
    assert pooled.se == pytest.approx((1 / 0.02 ** 2 + 1 / 0.01 ** 2) ** -0.5) and pooled.se < label.se
    assert pool_audits([probe, None], 0.95) is probe and pool_audits([None, None], 0.95) is None


def test_overlap_needs_positive_evidence_and_fails_on_missing_support():
    from cje.checks.status import overlap_evidence

    raw = {"ess": 0.6, "hill_index": 5.0}
    covered = {"m": 1.0, "lower": 0.95, "upper": 1.05, "verdict": "PASS"}
    missing = {"m": 0.6, "lower": 0.58, "upper": 0.62, "verdict": "FAIL"}
    unclear = {"m": 0.9, "lower": 0.7, "upper": 1.2, "verdict": "UNTESTED"}
    assert overlap_evidence(raw, covered, [])[0] == "PASS"
    assert overlap_evidence(raw, missing, [])[0] == "FAIL"       # ESS and Hill cannot see missing mass
    assert overlap_evidence(raw, unclear, [])[0] == "UNTESTED"   # good ESS alone is not evidence of support
    assert overlap_evidence({"ess": 0.2, "hill_index": 5.0}, covered, [])[0] == "UNTESTED"
    assert overlap_evidence({"ess": 0.05, "hill_index": 5.0}, covered, [])[0] == "FAIL"
    balance = {"check": "ips_vs_direct", "status": "FAIL"}
    assert overlap_evidence(raw, covered, [balance])[0] == "FAIL"
    assert overlap_evidence(raw, covered, [{"check": "ips_vs_direct", "status": "UNTESTED"}])[0] == "PASS"


def test_probe_audit_counts_the_calibration_error():
    from cje.checks.audits import probe_audit

    rng = np.random.default_rng(3)
    y = rng.uniform(0, 1, 200)
    f = y + rng.normal(0, 0.05, 200)
    plain = probe_audit(y, f, 0.05, 0.95)
    by_fold = f[None, :] + np.array([-0.02, 0.01, 0.03, -0.01, 0.0])[:, None]
    with_oua = probe_audit(y, f, 0.05, 0.95, by_fold)
    assert with_oua.delta == plain.delta and with_oua.se > plain.se
    assert with_oua.ci_upper - with_oua.ci_lower > plain.ci_upper - plain.ci_lower


def test_target_policies_keep_the_file_order_with_many_policies(tmp_path):
    """With hundreds of targets the struct polars infers orders its fields by hash; the loader
    keeps the order of the first row's keys, the same in every process."""
    import json
    import random

    from cje.data.loaders import load_logged_data

    names = [f"t{i:03d}" for i in range(300)]
    random.Random(3).shuffle(names)
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": "x", "response": "y", "judge_score": 0.5,
                                        "base_policy_logprob": -1.0,
                                        "target_policy_logprobs": {n: -1.0 for n in names}}) + "\n"
                            for i in range(20)))
    assert load_logged_data(path).target_policies == names
