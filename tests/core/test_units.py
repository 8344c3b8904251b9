"""Unit checks of the core building blocks against their defining formulas."""

from __future__ import annotations

import numpy as np
import pytest

from cje.calibration import calibrate, fit_isotonic
from cje.coverage import mask_oracle_labels
from cje.diagnostics import bhattacharyya_overlap, ess_fraction, hill_tail_index, policy_status, transport_audit
from cje.errors import InputError
from cje.folds import assign_folds, stable_hash
from cje.inference import interval, oua_variance, se_from_influence
from cje.weights import clip_weights, hajek_weights, simcal_weights, simplex_min_variance


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


def test_simcal_weights_are_monotone_mean_one_and_keep_ips_unbiased():
    rng = np.random.default_rng(3)
    s = rng.uniform(size=4000)
    w = np.exp(1.5 * (s - 0.5) + rng.normal(0, 0.5, 4000))
    w /= w.mean()
    r = s
    folds = rng.integers(0, 5, 4000)
    res = simcal_weights(w, s, r, folds, 5)
    assert res.weights.mean() == pytest.approx(1.0)
    assert list(res.stacking_weights) == ["increasing"]
    assert np.var(res.weights) <= np.var(w)
    assert np.mean(res.weights * r) == pytest.approx(np.mean(w * r), abs=0.01)


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
    good = {"ess": 0.5, "hill_index": 3.0}
    assert policy_status(weight_role="primary", raw_weights=good, overlap=0.9, transport=None,
                         drop_fraction=0.0, uses_calibration=True).status == "GOOD"
    low = {"ess": 0.05, "hill_index": 3.0}
    assert policy_status(weight_role="primary", raw_weights=low, overlap=0.9, transport=None,
                         drop_fraction=0.0, uses_calibration=True).status == "CRITICAL"
    assert policy_status(weight_role="correction", raw_weights=low, overlap=0.9, transport=None,
                         drop_fraction=0.0, uses_calibration=True).status == "WARNING"
    s = policy_status(weight_role="none", raw_weights=None, overlap=0.4, transport=None,
                      drop_fraction=0.0, uses_calibration=True)
    assert s.status == "CRITICAL" and not s.reliable and "overlap" in s.reasons[0]
