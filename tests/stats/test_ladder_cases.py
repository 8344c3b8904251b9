"""The cases that showed the status ladder carried little information, each as a regression
test with numbers (statistics.md 7c). One replicate each, fixed seeds, n = 1,000."""

from __future__ import annotations

import numpy as np
import pytest

from cje.analysis.run import analyze_context
from cje.checks.audits import disagreement
from cje.estimators import get_estimator
from cje.estimators.context import AnalysisOptions, build_context
from cje.sim.scenarios import simulate_scenario


def _run(scenario: str, seed: int, estimator: str, coverage: float, probe: float = 0.0, level: float = 0.95):
    ds = simulate_scenario(scenario, 1000, seed=seed)
    ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=coverage, seed=seed, probe_coverage=probe,
                                                             level=level))
    return ds, analyze_context(ctx, get_estimator(estimator))


def test_the_status_does_not_change_with_the_interval_level():
    """The checks run at a level fixed in the code: --level changes the intervals, not the word."""
    for estimator in ("calibrated-ips", "direct", "tr-cpo"):
        _, a = _run("gaming", 31, estimator, 0.25, probe=0.1, level=0.95)
        _, b = _run("gaming", 31, estimator, 0.25, probe=0.1, level=0.80)
        assert {p: r.status for p, r in a.policies.items()} == {p: r.status for p, r in b.policies.items()}
        for p in a.policies:
            assert b.policies[p].ci_upper - b.policies[p].ci_lower < a.policies[p].ci_upper - a.policies[p].ci_lower


def test_a_judge_blind_defect_the_base_never_shows_is_not_good_without_probes():
    """tr-cpo was 0.535 [0.518, 0.551] GOOD for a truth of 0.435: the label term cannot see mass
    the base never produces. The support check can: m = 0.6 for a 40% defect, so overlap FAILs and
    the weighted labels cannot pass transport; GOOD is withheld, the IPS estimates are CRITICAL."""
    ds, trcpo = _run("judge-blind-unseen", 7, "tr-cpo", 0.25)
    block = trcpo.policies["defective"]
    support = trcpo.metadata["diagnostics"]["defective"]["support"]
    assert support["verdict"] == "FAIL" and support["m"] == pytest.approx(0.6, abs=0.03) and support["upper"] < 0.9
    assert block.ci_lower > ds.truth["defective"]  # the miss ...
    assert block.status != "GOOD"                  # ... is not GOOD
    overlap = next(a for a in block.assumptions if a["id"] == "transport_or_overlap")
    assert overlap["status"] == "UNTESTED" and "support" in overlap["evidence"]
    for estimator in ("raw-ips", "calibrated-ips"):
        _, ips = _run("judge-blind-unseen", 7, estimator, 0.25)
        assert ips.policies["defective"].status == "CRITICAL"
        assert any("support" in r for r in ips.policies["defective"].reasons)
    # the healthy targets of the same data keep a PASSing support
    for p in ("similar", "better"):
        assert trcpo.metadata["diagnostics"][p]["support"]["verdict"] == "PASS"


def test_probe_evidence_is_never_ignored():
    """raw-ips at 100% coverage with 10% probes on the blind target: the probes audit FAILed, yet
    raw-ips (R = Y, resting on the weights only) stayed GOOD. Every estimate is now compared with
    the probe-label mean, and the weights' missing support fails overlap: CRITICAL."""
    ds, res = _run("judge-blind-unseen", 11, "raw-ips", 1.0, probe=0.1)
    block = res.policies["defective"]
    assert block.status == "CRITICAL" and not block.reliable
    vs_probes = next(c for c in block.checks if c["check"] == "estimate_vs_probe_mean")
    assert vs_probes["difference"] > 0.04 and vs_probes["detectable_bias"] < 0.15


def test_with_probes_every_estimate_built_on_the_judge_carries_the_correction():
    """calibrated-ips with probes was GOOD in 0% of healthy estimates (it rested on transport);
    now it carries the probe residual correction and no longer rests on transport."""
    for coverage in (0.05, 0.25, 1.0):
        _, res = _run("mild", 5, "calibrated-ips", coverage, probe=0.5)
        for p, block in res.policies.items():
            ids = {a["id"] for a in block.assumptions}
            assert "transport" not in ids and "random_labels" in ids, (coverage, p, ids)
            assert block.details["n_probe_labels"] == 500
            assert block.estimate == pytest.approx(block.details["uncorrected_estimate"]
                                                   + block.details["residual_correction"])
            assert block.status == "GOOD", (coverage, p, block.reasons)


def test_disagreement_checks_use_the_audits_rule():
    """IPS vs direct at -0.038 [-0.049, -0.027] against an estimate SE of 0.013 was only a DISAGREE;
    with the one rule a significant difference larger than min(margin, SE) is a FAIL."""
    se = 0.011 / 1.96
    check = disagreement("ips_vs_direct", {"difference": -0.038, "se": se, "ci_lower": -0.049, "ci_upper": -0.027,
                                           "df": 500.0}, 0.05, ("overlap",), se_estimate=0.013)
    assert check["status"] == "FAIL"
    assert check["detectable_bias"] == pytest.approx((3.1 + 0.84) * se, rel=0.02)
    # the same difference measured ten times less precisely: inconclusive, never a PASS
    wide = disagreement("ips_vs_direct", {"difference": -0.038, "se": 10 * se, "ci_lower": -0.15, "ci_upper": 0.07,
                                          "df": 500.0}, 0.05, ("overlap",), se_estimate=0.013)
    assert wide["status"] == "UNTESTED" and not wide["pass_reachable"]


def test_without_probes_the_status_says_what_makes_good_reachable():
    """A capped status names the probe labels that would make GOOD reachable and, when the
    weights pass, the estimator that can earn GOOD now."""
    _, res = _run("mild", 3, "direct", 0.25)
    block = res.policies["better"]
    assert block.status == "WARNING"
    reason = next(r for r in block.reasons if "'transport' not checked" in r)
    needed = int(reason.split("about ")[1].split(" probe")[0])
    assert 50 <= needed <= 5000
    assert "tr-cpo" in reason
    _, tr = _run("mild", 3, "tr-cpo", 0.25)
    assert tr.policies["better"].status == "GOOD", tr.policies["better"].reasons


def test_support_mass_is_in_the_diagnostics_of_every_policy():
    _, res = _run("strong", 2, "direct", 0.25)
    for p in res.target_policies:
        support = res.metadata["diagnostics"][p]["support"]
        assert support["verdict"] in ("PASS", "UNTESTED") and support["lower"] <= support["m"] <= support["upper"]
        assert np.isfinite(support["m"])


def test_missing_support_that_scores_differently_fails_transport_without_probes():
    """gaming-unseen without probes: the gamer's gamed responses are mass the base never writes
    (support m = 0.5) and they score higher, so IPS on f(S) (covered part only) and the fresh
    draws' mean f(S') differ. With the missing support that difference is evidence against
    transport on the uncovered part: direct and tr-cpo are CRITICAL for the gamer, not WARNING;
    the honest target is untouched."""
    for estimator in ("direct", "tr-cpo"):
        ds, res = _run("gaming-unseen", 6_000_003, estimator, 0.25)
        gamer = res.policies["gamer"]
        assert gamer.ci_lower > ds.truth["gamer"] and gamer.status == "CRITICAL", gamer.reasons
        assert res.metadata["diagnostics"]["gamer"]["support"]["verdict"] == "FAIL"
        assert any("ips_vs_direct" in r and "FAIL" in r for r in gamer.reasons)
        assert res.policies["honest"].status != "CRITICAL"


def test_a_large_correction_from_probe_labels_alone_is_not_good():
    """gaming-unseen with 10% probes: the gamer's calibration is off by about -0.15 and its weights
    cannot be pooled (the base never games), so direct corrects with its 100 probe labels alone.
    Those intervals covered 0.92-0.94 per cell over 200 replicates and were GOOD: GOOD
    given to a miss in up to 8% of a cell. Such an estimate is now WARNING, saying why; the honest
    target of the same data, whose correction pools the weighted labels, stays GOOD."""
    ds, res = _run("gaming-unseen", 3, "direct", 0.25, probe=0.1)
    gamer, honest = res.policies["gamer"], res.policies["honest"]
    transport = res.metadata["diagnostics"]["gamer"]["transport"]
    assert transport["status"] == "FAIL" and transport["delta"] < -0.1
    assert gamer.details["label_pool_weight"] == 0.0 and gamer.details["n_probe_labels"] == 100
    assert gamer.status == "WARNING" and gamer.reliable
    assert any("probe labels alone" in r and "GOOD needs" in r for r in gamer.reasons), gamer.reasons
    assert gamer.ci_lower <= ds.truth["gamer"] <= gamer.ci_upper  # the correction itself is kept
    assert honest.status == "GOOD" and honest.details["label_pool_weight"] > 0.5
