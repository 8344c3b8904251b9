"""Fast checks of the DR family: registry, nuisance fits, bad input, per-prompt averaging, algebra."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cje.analysis.run import analyze_loaded
from sklearn.isotonic import IsotonicRegression

from cje.stats.calibration import fit_isotonic
from cje.estimators.context import AnalysisOptions, build_context
from cje.errors import InputError
from cje.estimators import estimator_names, get_estimator
from cje.estimators.dr import DRCPOEstimator
from cje.estimators.dr_inputs import prepare_dr
from cje.estimators.outcome import ConstantOutcomeModel, isotonic_step
from cje.estimators.stacked import COMPONENTS, StackedDREstimator
from cje.estimators.tmle import TMLEEstimator, solve_fluctuation
from cje.stats.inference import interval
from cje.sim.scenarios import simulate
from cje.stats.weights import WeightError

DR_ESTIMATORS = ("dr-cpo", "mrdr", "tmle", "oc-dr-cpo", "tr-cpo", "stacked-dr")


def _without_prompts(fresh, drop_ids):
    keep = ~np.isin(fresh.prompt_ids, drop_ids)
    return dataclasses.replace(fresh, prompt_ids=fresh.prompt_ids[keep], judge_scores=fresh.judge_scores[keep],
                               oracle_labels=fresh.oracle_labels[keep], draw_idx=fresh.draw_idx[keep])


def test_all_six_registered_with_the_dr_roles():
    for name in DR_ESTIMATORS:
        assert name in estimator_names()
        est = get_estimator(name)
        assert est.weight_role == "correction" and est.needs_fresh_draws


def test_isotonic_step_matches_sklearn_fit():
    rng = np.random.default_rng(3)
    grid = np.linspace(-0.1, 1.1, 301)
    for case in range(40):
        n = int(rng.integers(2, 200))
        x = np.round(rng.random(n), 2)  # ties
        y = rng.random(n) * 1.4 - 0.2
        w = rng.random(n) * (rng.random(n) > 0.2)  # some zero weights
        inc = bool(case % 2)
        model = IsotonicRegression(increasing=inc, y_min=0.0, y_max=1.0, out_of_bounds="clip")
        model.fit(x[w > 0], y[w > 0], sample_weight=w[w > 0])
        ours = isotonic_step(x, y, w, increasing=inc, y_min=0.0, y_max=1.0)
        np.testing.assert_allclose(ours(grid), model.predict(grid), atol=1e-12)
        np.testing.assert_allclose(fit_isotonic(x, y, inc, w)(grid), model.predict(grid), atol=1e-12)


def test_fluctuation_root_solves_the_weighted_score():
    rng = np.random.default_rng(7)
    W = rng.exponential(size=500)
    R = rng.random(500)
    off = np.zeros(500)
    h = rng.random(500) + 0.1
    eps = solve_fluctuation(W, R, off, h)
    assert abs(np.mean(W * (R - 1 / (1 + np.exp(-(off + eps * h)))))) < 1e-10


def test_missing_fresh_draws_error_lists_ids_and_count():
    ds = simulate(200, seed=1)
    fresh = dict(ds.fresh)
    fresh["better"] = _without_prompts(fresh["better"], ["sim_3", "sim_17", "sim_40"])
    for name in DR_ESTIMATORS:
        with pytest.raises(InputError) as err:
            analyze_loaded(ds.logged, fresh, name, AnalysisOptions(oracle_coverage=0.5))
        message = str(err.value)
        assert "3 logged prompts" in message and "sim_3" in message and "sim_17" in message, message
        assert "better" in message and "--allow-missing-fresh-draws" in message


def test_allow_missing_fresh_draws_drops_and_counts_per_policy():
    ds = simulate(200, seed=2)
    fresh = dict(ds.fresh)
    fresh["better"] = _without_prompts(fresh["better"], ["sim_3", "sim_17", "sim_40"])
    opts = AnalysisOptions(oracle_coverage=0.5, allow_missing_fresh_draws=True)
    for name in DR_ESTIMATORS:
        result = analyze_loaded(ds.logged, fresh, name, opts)
        better = result.policies["better"]
        assert better.n_dropped_by_reason["missing_fresh_draws"] == 3
        assert better.n_used == 197 and np.isfinite(better.estimate)
        assert result.policies["similar"].n_used == 200
        assert "missing_fresh_draws" not in result.policies["similar"].n_dropped_by_reason
        assert result.to_dict()["metadata"]["diagnostics"]["better"]["judge_overlap_weighted"] > 0


def test_fresh_draws_for_unlogged_prompts_are_ignored_and_counted():
    ds = simulate(200, seed=4)
    extra = dataclasses.replace(
        ds.fresh["worse"], prompt_ids=np.concatenate([ds.fresh["worse"].prompt_ids, ["ghost_1", "ghost_2"]]),
        judge_scores=np.concatenate([ds.fresh["worse"].judge_scores, [0.0, 1.0]]),
        oracle_labels=np.concatenate([ds.fresh["worse"].oracle_labels, [np.nan, np.nan]]),
        draw_idx=np.concatenate([ds.fresh["worse"].draw_idx, [0, 0]]))
    opts = AnalysisOptions(oracle_coverage=0.5)
    for name in ("dr-cpo", "tmle", "stacked-dr"):
        clean = analyze_loaded(ds.logged, ds.fresh, name, opts).policies["worse"]
        with_ghosts = analyze_loaded(ds.logged, {**ds.fresh, "worse": extra}, name, opts)
        got = with_ghosts.policies["worse"]
        assert got.estimate == pytest.approx(clean.estimate, abs=1e-12)
        assert got.n_dropped_by_reason["fresh_draws_for_unlogged_prompts_ignored"] == 2
        assert with_ghosts.metadata["fresh_draws"]["worse"]["n_ignored_prompts"] == 2


def test_several_draws_per_prompt_are_averaged_per_prompt():
    ds = simulate(300, seed=6, draws_per_prompt=3)
    ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=0.5))
    est = DRCPOEstimator()
    pe = est.estimate(ctx, "better")
    assert pe.influence.size == 300 and pe.n_used == 300  # one cluster per prompt
    inp = prepare_dr(ctx, "better")
    g = inp.outcome(est.outcome_model)  # the cached cross-fit the estimate used
    by_prompt = np.zeros(300)
    np.add.at(by_prompt, inp.fpos, g.fresh)
    np.testing.assert_allclose(inp.row_mean(g.fresh), by_prompt / 3)
    assert pe.details["direct_part"] == pytest.approx(float((by_prompt / 3).mean()))
    assert pe.details["fresh_draws_per_prompt"] == 3


def test_tmle_targets_the_weighted_score_and_moves_a_wrong_model():
    ds = simulate(1000, seed=8)
    ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=0.25))
    pe = TMLEEstimator(ConstantOutcomeModel(0.5)).estimate(ctx, "better")
    assert abs(pe.details["orthogonality_score"]["mean"]) < 1e-9
    assert pe.details["direct_part_untargeted"] == pytest.approx(0.5)
    assert abs(pe.estimate - 0.5) > 0.02 and abs(pe.estimate - ds.truth["better"]) < 0.04


def test_stacked_reports_the_variance_of_its_own_combination():
    """Not "stacked SE <= min component SE" (true by construction): the SE cje reports for the
    stack is exactly a' V a of the weights it chose, V's diagonal is what each component reports
    alone, and the weights are a convex combination. Its coverage is checked in tests/stats."""
    ds = simulate(800, seed=9)
    ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=0.1))
    pe = StackedDREstimator().estimate(ctx, "worse")
    a = pe.details["stacking_weights"]
    assert set(a) == set(COMPONENTS) and abs(sum(a.values()) - 1) < 1e-9 and min(a.values()) >= 0
    comps = pe.details["component_estimates"]
    assert pe.estimate == pytest.approx(sum(a[c] * comps[c] for c in COMPONENTS), abs=1e-12)
    ci = interval(pe.estimate, pe.influence, pe.jackknife)
    if not pe.details["se_floored_at_best_component"]:
        assert ci.se == pytest.approx(pe.details["stacked_se"], rel=1e-9)
    else:
        assert ci.se == pytest.approx(min(pe.details["component_se"].values()), rel=1e-9)
    se = pe.details["component_se"]
    for name in COMPONENTS:  # the diagonal is what analyze reports for the component alone
        alone = get_estimator(name).estimate(ctx, "worse")
        assert interval(alone.estimate, alone.influence, alone.jackknife).se == pytest.approx(se[name], rel=1e-9)


def test_tr_cpo_variance_is_its_own_influence_function_plus_a_real_jackknife():
    """statistics.md 5 (revised): never a constant or assumed jackknife. Below 100% coverage the
    label term's IF and the OUA over f^(-k) are both estimated; at 100% (every row labelled, R = Y)
    the label term merges into the full-weight correction and no calibrator enters."""
    ds = simulate(300, seed=10)
    full = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=1.0))
    part = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=0.2))
    for name in DR_ESTIMATORS:
        pe = get_estimator(name).estimate(full, "similar")
        assert pe.jackknife is None and np.isfinite(pe.estimate)
        pe = get_estimator(name).estimate(part, "similar")
        assert pe.jackknife is not None and pe.jackknife.shape == (5,)
    pe = get_estimator("tr-cpo").estimate(part, "similar")
    assert np.ptp(pe.jackknife) > 0 and pe.details["n_labels"] == 60
    label_if = pe.df_parts[0][0]
    assert np.count_nonzero(label_if) == 60  # the label term lives on the labelled rows only
    assert pe.details["label_term_se"] == pytest.approx(np.sqrt(np.var(label_if, ddof=1) / 300))


def test_tr_cpo_label_term_uses_the_full_weight():
    """The label term is sum_L W (Y - f^oof) / sum_L W with the raw (Hajek) weights, not m(S):
    a weight that depends only on S would give mean zero by construction."""
    ds = simulate(500, seed=12)
    ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=0.4))
    inp = prepare_dr(ctx, "better")
    pe = get_estimator("tr-cpo").estimate(ctx, "better")
    L = inp.L
    expected = np.sum(inp.W_raw[L] * (inp.Y[L] - inp.f_oof[L])) / np.sum(inp.W_raw[L])
    assert pe.details["label_term"] == pytest.approx(expected, abs=1e-12)


def test_weight_override_of_the_wrong_length_is_a_loud_failure():
    ds = simulate(200, seed=11)
    ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=0.5))
    with pytest.raises(WeightError, match="expected 200"):
        DRCPOEstimator(weights=lambda c, p: np.ones(5)).estimate(ctx, "similar")
