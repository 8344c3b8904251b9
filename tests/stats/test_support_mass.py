"""Support: the mean of the unnormalised importance ratios, and the judge-blind scenarios
(statistics.md 7c "Support", 8 "Honest flags").

m = mean_i exp(lp_t,i - lp_b,i) over logged rows has expectation 1 - q, q = the target's
probability of responses the base never writes (the Hajek normalisation hides it).
:func:`cje.stats.diagnostics.support_mass` bounds E[m] at one-sided level 0.99 and claims missing
mass (verdict FAIL) only when the upper bound is below 1 - 0.10.

Monte Carlo, vectorised: the logged rows of a scenario are iid over prompts, so one
``simulate_scenario`` call with R * n prompts, reshaped to (R, n), is R independent replicates
of n logged rows, drawn by the real generator (log-prob noise and clipping included). Fixed seeds.

Tolerances come from the Monte-Carlo error, not from observed rates:
* "false claims <= 1%": a cell of R trials passes when its count of claims is at most the 99.9%
  quantile of Binomial(R, 0.01) (a cell whose true rate is 1% fails with probability < 0.1%); the
  same bound is applied to all healthy cells pooled, which is sharper.
* "detection >= 90%": the count is at least the 0.1% quantile of Binomial(R, 0.90).
* means: within 4 Monte-Carlo standard errors.
Negative controls show that the tests can fail: the naive normal upper bound claims missing
mass falsely on heavy tails, and ``direct`` misses the defective target by ~0.09.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib

import numpy as np
import pytest
from scipy import special, stats

from cje.stats.diagnostics import SUPPORT_LEVEL, SUPPORT_TOLERANCE, support_mass
from cje.sim.scenarios import SCENARIOS, PolicySpec, scenario_truth, simulate, simulate_scenario

REPLICATES = 400
SIZES = (300, 1000)
SEED0 = 18_000_000
SUPPORT_SCENARIOS = ("mild", "strong", "gaming", "gaming-unseen", "judge-blind-unseen", "judge-blind-rare")


def max_false(trials: int, rate: float = 0.01) -> int:
    """Largest count of claims consistent with a true rate of ``rate`` (99.9% binomial quantile)."""
    return int(stats.binom.ppf(0.999, trials, rate))


def min_detected(trials: int, rate: float = 0.90) -> int:
    """Smallest count of detections consistent with a true rate of ``rate`` (0.1% binomial quantile)."""
    return int(stats.binom.ppf(0.001, trials, rate))


def unseen_mass(scenario, policy: str) -> float:
    """q: the target's probability of a trait (gaming, defect) the base never shows."""
    base, spec = scenario.policies["base"], scenario.policies[policy]
    covered = 1.0
    for rate in ("gaming_rate", "defect_rate"):
        if getattr(base, rate) == 0:
            covered *= 1.0 - getattr(spec, rate)
    return 1.0 - covered


def expected_m(scenario, policy: str) -> float:
    """E[m] = (1 - q) exp((sigma_t^2 + sigma_b^2) / 2) (independent N(0, sigma^2) log-prob noise)."""
    return (1.0 - unseen_mass(scenario, policy)) * np.exp(scenario.logprob_noise ** 2)


def log_ratios(scenario, n: int, replicates: int, seed: int) -> dict[str, np.ndarray]:
    """{target: (replicates, n) log-ratios lp_t - lp_b}: one call, iid prompts reshaped."""
    ds = simulate_scenario(scenario, n * replicates, seed=seed, fresh_oracle=False)
    d = ds.logged
    return {p: (d.target_logprobs[p] - d.base_logprobs).reshape(replicates, n) for p in d.target_policies}


# --- the new scenarios, and the old ones unchanged ---------------------------------------------------

def _fingerprint(ds) -> str:
    h = hashlib.sha256()
    d = ds.logged
    for a in (d.judge_scores, d.oracle_labels, d.base_logprobs, d.response_lengths):
        h.update(np.ascontiguousarray(a, dtype=float).tobytes())
    for p in sorted(d.target_logprobs):
        h.update(p.encode())
        h.update(np.ascontiguousarray(d.target_logprobs[p], float).tobytes())
    for p in sorted(ds.fresh):
        f = ds.fresh[p]
        h.update(p.encode())
        h.update(np.ascontiguousarray(f.judge_scores, float).tobytes())
        h.update(np.ascontiguousarray(f.oracle_labels, float).tobytes())
    h.update(repr(sorted(ds.truth.items())).encode())
    return h.hexdigest()[:16]


# sha256 prefixes of the data and truths drawn by cje/simulation.py as of e3abc27 (before the
# judge-blind defects were added), same calls as below
BEFORE = {"mild": "efdfb62172ee900d", "strong": "403488c8096c4ea9", "gaming": "89f7eb1fa0f22e5d",
          "gaming-unseen": "2a9570a45ad665de", "simulate": "6c0611f3271ab499",
          "simulate-nosurr": "d605a25af14b1d43"}


def test_existing_processes_are_unchanged_bit_for_bit():
    now = {name: _fingerprint(simulate_scenario(name, 500, seed=123, draws_per_prompt=2))
           for name in ("mild", "strong", "gaming", "gaming-unseen")}
    now["simulate"] = _fingerprint(simulate(500, seed=123, draws_per_prompt=2))
    now["simulate-nosurr"] = _fingerprint(simulate(300, seed=7, surrogacy=False))
    assert now == BEFORE


@pytest.mark.parametrize("name", ["judge-blind-unseen", "judge-blind-rare"])
def test_judge_blind_truths_match_the_fresh_draws(name):
    """The fixed-seed truth of every target equals its fresh-draw oracle mean (4 MC SE), and the
    defective target's truth is ~0.09 below a defect-free policy with the same quality shift."""
    sc = SCENARIOS[name]
    ds = simulate_scenario(name, 200_000, seed=SEED0 + 1)
    for p in sc.targets:
        y = ds.fresh[p].oracle_labels
        assert abs(y.mean() - ds.truth[p]) <= 4 * y.std() / np.sqrt(y.size), (p, y.mean(), ds.truth[p])
    clean = dataclasses.replace(sc, policies={"base": PolicySpec(0.0), "clean": PolicySpec(0.3)})
    drop = scenario_truth(clean, "clean") - ds.truth["defective"]
    assert 0.08 <= drop <= 0.10, drop  # defect_penalty 0.25 on 40% of responses, less the clipping
    # the judge ranks it first (largest shift); the truth ranks it last, below the base
    assert ds.truth["defective"] < min(ds.truth["similar"], ds.truth["better"], scenario_truth(sc, "base"))


def test_the_judge_cannot_see_the_defect():
    """The defective target's judge scores have the distribution of a defect-free policy with the
    same shift (chi-square over the 11 judge levels), although its oracle mean is 0.09 lower."""
    sc = SCENARIOS["judge-blind-unseen"]
    clean = dataclasses.replace(sc, policies={"base": sc.policies["base"], "defective": PolicySpec(0.3)})
    a = simulate_scenario(sc, 100_000, seed=SEED0 + 2).fresh["defective"].judge_scores
    b = simulate_scenario(clean, 100_000, seed=SEED0 + 3).fresh["defective"].judge_scores
    levels = np.round(np.concatenate([a, b]) * 10).astype(int)
    table = np.array([np.bincount(levels[: a.size], minlength=11), np.bincount(levels[a.size:], minlength=11)])
    table = table[:, table.sum(0) > 0]
    assert stats.chi2_contingency(table).pvalue > 0.001


@pytest.mark.parametrize("name", SUPPORT_SCENARIOS)
def test_mean_ratio_is_one_minus_the_unseen_mass(name):
    """E[m] = 1 - q (times exp(sigma^2) with noise sd sigma on both log-probs), within 4 MC SE."""
    sc = SCENARIOS[name]
    lr = log_ratios(name, 200_000, 1, seed=SEED0 + 4)
    for p, x in lr.items():
        w = np.exp(x.ravel())
        se = w.std() / np.sqrt(w.size)
        assert abs(w.mean() - expected_m(sc, p)) <= 4 * se + 1e-12, (name, p, w.mean(), expected_m(sc, p), se)
    if name == "judge-blind-unseen":
        assert unseen_mass(sc, "defective") == pytest.approx(0.4)


def _direct_errors(name: str, replicates: int, n: int) -> dict[str, np.ndarray]:
    from cje.estimators.context import AnalysisOptions, build_context
    from cje.estimators import get_estimator

    direct = get_estimator("direct")
    out = {p: [] for p in SCENARIOS[name].targets}
    for r in range(replicates):
        ds = simulate_scenario(name, n, seed=SEED0 + 100 + r)
        ctx = build_context(ds.logged, ds.fresh, AnalysisOptions(oracle_coverage=1.0, seed=r))
        for p in out:
            out[p].append(direct.estimate(ctx, p).estimate - ds.truth[p])
    return {p: np.asarray(v) for p, v in out.items()}


@pytest.mark.parametrize("name", ["judge-blind-unseen", "judge-blind-rare"])
def test_direct_at_full_coverage_is_unbiased_on_healthy_targets_and_misses_the_defective_one(name):
    """The point of the scenario: the judge-based calibration transports to the healthy targets
    (|mean error| <= 4 MC SE + 0.002, the isotonic end-block bias) and not to the
    defective one, whose defect the judge does not see (error about defect_penalty * (0.4 - base
    rate), less where the label clipping binds: measured +0.094 unseen, +0.082 rare over 200
    replicates; required > 0.07)."""
    errors = _direct_errors(name, replicates=60, n=2000)
    for p, e in errors.items():
        mc_se = e.std(ddof=1) / np.sqrt(e.size)
        if p == "defective":
            assert e.mean() > 0.07 and e.mean() > 10 * mc_se, (p, e.mean(), mc_se)
        else:
            assert abs(e.mean()) <= 4 * mc_se + 0.002, (p, e.mean(), mc_se)


# --- support_mass on the scenarios ---------------------------------------------------------------------

def _support_cells() -> dict[tuple[str, str, int], dict]:
    cells = {}
    for i, name in enumerate(SUPPORT_SCENARIOS):
        sc = SCENARIOS[name]
        for j, n in enumerate(SIZES):
            for p, x in log_ratios(name, n, REPLICATES, seed=SEED0 + 1000 * i + j).items():
                res = [support_mass(row) for row in x]
                cells[(name, p, n)] = {
                    "q": unseen_mass(sc, p), "expected_m": expected_m(sc, p),
                    "m": np.array([r.m for r in res]), "upper": np.array([r.upper for r in res]),
                    "lower": np.array([r.lower for r in res]),
                    "claims": int(sum(r.missing for r in res)), "passes": int(sum(r.verdict == "PASS" for r in res))}
    return cells


@pytest.fixture(scope="module")
def support_cells():
    return _support_cells()


def test_no_false_claims_on_covered_targets(support_cells):
    """<= 1% false claims per covered target, including the heavy-tailed noisy 'strong' targets and
    the heavily weighted 'defective' of judge-blind-rare; and pooled over all covered cells."""
    healthy = {k: c for k, c in support_cells.items() if c["q"] == 0}
    assert len(healthy) == 2 * 14
    bad = [f"{k}: {c['claims']}/{REPLICATES}" for k, c in healthy.items() if c["claims"] > max_false(REPLICATES)]
    assert not bad, bad
    total = sum(c["claims"] for c in healthy.values())
    assert total <= max_false(REPLICATES * len(healthy)), total


def test_unseen_mass_is_detected(support_cells):
    """judge-blind-unseen's defective target (q = 0.4) and gaming-unseen's gamer (q = 0.5): >= 90%."""
    for n in SIZES:
        for key in (("judge-blind-unseen", "defective", n), ("gaming-unseen", "gamer", n)):
            c = support_cells[key]
            assert c["claims"] >= min_detected(REPLICATES), (key, c["claims"])


def test_mean_ratio_over_replicates_and_the_bounds(support_cells):
    """Mean m within 4 MC SE of E[m] in every cell; each one-sided bound misses E[m] in <= 1%."""
    for key, c in support_cells.items():
        m = c["m"]
        assert abs(m.mean() - c["expected_m"]) <= 4 * m.std(ddof=1) / np.sqrt(m.size) + 1e-12, (key, m.mean())
        assert np.all(c["lower"] <= m) and np.all(m <= c["upper"]), key
        # (1e-9: gaming-unseen's gamer has the constant ratio 0.5 up to rounding)
        assert np.sum(c["upper"] < c["expected_m"] - 1e-9) <= max_false(REPLICATES), key
        assert np.sum(c["lower"] > c["expected_m"] + 1e-9) <= max_false(REPLICATES), key


def test_healthy_light_tailed_targets_pass(support_cells):
    """PASS is reachable: the mild targets' lower bound clears 0.9 in >= 90% of replicates at n = 1,000."""
    for p in SCENARIOS["mild"].targets:
        assert support_cells[("mild", p, 1000)]["passes"] >= min_detected(REPLICATES), p


# --- heavy tails and noise, synthetic --------------------------------------------------------------------

SYNTH_REPLICATES = 1000


def synthetic(kind: str, par: float, q: float, noise: float, n: int, seed: int) -> np.ndarray:
    """(replicates, n) log-ratios with E[exp] = (1 - q) exp(noise^2): log-normal (log-sd ``par``,
    a Gaussian shift of size par) or Pareto (index ``par``: Hill < 2 for par < 2), each scaled
    by 1 - q, plus N(0, noise^2) on each of the two log-probs."""
    rng = np.random.default_rng(seed)
    shape = (SYNTH_REPLICATES, n)
    if kind == "lognormal":
        lr = par * rng.standard_normal(shape) - par ** 2 / 2
    else:
        lr = np.log((par - 1) / par) - np.log(rng.random(shape)) / par
    lr = lr + np.log1p(-q)
    if noise:
        lr = lr + noise * rng.standard_normal(shape) - noise * rng.standard_normal(shape)
    return lr


HEAVY = [("pareto", 1.1), ("pareto", 1.3), ("pareto", 1.5), ("pareto", 2.0),
         ("lognormal", 1.0), ("lognormal", 1.5), ("lognormal", 2.0)]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind,par", HEAVY)
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_heavy_tails_and_noise_do_not_create_false_claims(kind, par, noise, n):
    """Covered targets with Hill index 1.1-2.4 (Pareto ratios of index 1.1-2, log-normal ratios of
    log-sd 1-2), with and without log-prob noise: <= 1% false claims, and the upper bound itself
    lies below E[m] in <= 1% (it is a 99% bound, not only a 90%-tolerant one)."""
    lr = synthetic(kind, par, 0.0, noise, n, seed=zlib.crc32(repr((kind, par, noise, n)).encode()))
    res = [support_mass(x) for x in lr]
    claims = sum(r.missing for r in res)
    assert claims <= max_false(SYNTH_REPLICATES), claims
    below = sum(r.upper < np.exp(noise ** 2) for r in res)
    assert below <= max_false(SYNTH_REPLICATES), below


@pytest.mark.parametrize("kind,par,n", [("pareto", 1.5, 300), ("pareto", 1.3, 1000), ("lognormal", 2.0, 300)])
def test_a_naive_normal_bound_would_fail_the_heavy_tail_test(kind, par, n):
    """Negative control: m + z s / sqrt(n) < 0.9 claims missing mass falsely in > 1% on these
    covered targets (the sample mean of heavy-tailed ratios is usually below 1)."""
    lr = synthetic(kind, par, 0.0, 0.0, n, seed=7)
    w = np.exp(lr)
    naive = w.mean(1) + special.ndtri(SUPPORT_LEVEL) * w.std(1, ddof=1) / np.sqrt(n)
    assert np.sum(naive < 1 - SUPPORT_TOLERANCE) > max_false(SYNTH_REPLICATES)


@pytest.mark.parametrize("kind,par", [("lognormal", 3.0), ("pareto", 0.8)])
def test_an_infinite_mean_tail_is_inconclusive(kind, par):
    """Hill index <= 1: no claim, no bound (upper = inf), whatever the sample mean."""
    if kind == "pareto":  # index 0.8: infinite mean; scale 1
        lr = -np.log(np.random.default_rng(3).random((200, 1000))) / par
    else:
        lr = synthetic(kind, par, 0.4, 0.0, 1000, seed=3)[:200]
    res = [support_mass(x) for x in lr]
    heavy = [r for r in res if r.hill_index <= 1]
    assert len(heavy) > 100
    assert all(np.isinf(r.upper) and r.verdict != "FAIL" for r in heavy)
    assert sum(r.missing for r in res) <= max_false(200)


def test_noise_inflates_m_by_the_lognormal_factor():
    """E[exp(lr + e_t - e_b)] = E[exp(lr)] exp((sigma_t^2 + sigma_b^2) / 2): noise hides missing mass,
    it cannot create it (4 MC SE, n = 10^6, sigma_t = 0.3, sigma_b = 0.2, q = 0.4)."""
    rng = np.random.default_rng(5)
    n = 1_000_000
    lr = 0.25 * rng.standard_normal(n) - 0.25 ** 2 / 2 + np.log(0.6)
    w = np.exp(lr + 0.3 * rng.standard_normal(n) - 0.2 * rng.standard_normal(n))
    expected = 0.6 * np.exp((0.3 ** 2 + 0.2 ** 2) / 2)
    assert abs(w.mean() - expected) <= 4 * w.std() / np.sqrt(n)


@pytest.mark.parametrize("n", SIZES)
def test_unseen_mass_is_still_detected_through_noisy_logprobs(n):
    """judge-blind-unseen with noise sd 0.3 on every log-prob: m = 0.6 exp(0.09) = 0.656, >= 90% claimed."""
    sc = dataclasses.replace(SCENARIOS["judge-blind-unseen"], logprob_noise=0.3)
    x = log_ratios(sc, n, REPLICATES, seed=SEED0 + 9000 + n)["defective"]
    m = np.exp(x).mean(1)
    assert abs(m.mean() - 0.6 * np.exp(0.09)) <= 4 * m.std(ddof=1) / np.sqrt(m.size)
    assert sum(support_mass(row).missing for row in x) >= min_detected(REPLICATES)


# --- the function itself -------------------------------------------------------------------------------

def test_support_mass_exact_cases_and_stability():
    half = support_mass(np.full(500, np.log(0.5)))
    assert half.m == pytest.approx(0.5) and half.upper == pytest.approx(0.5) and half.verdict == "FAIL"
    one = support_mass(np.zeros(500))
    assert one.m == 1.0 and one.verdict == "PASS" and not one.missing
    x = np.random.default_rng(0).standard_normal(1000) * 0.5 - 0.125
    base = support_mass(x)
    for shift in (-700.0, 300.0):  # computed in the scale of the largest ratio: no under/overflow
        moved = support_mass(x + shift)
        assert moved.m == pytest.approx(base.m * np.exp(shift), rel=1e-9)
        assert moved.upper == pytest.approx(base.upper * np.exp(shift), rel=1e-9)
        assert moved.hill_index == pytest.approx(base.hill_index)
    assert base.lower <= base.m <= base.upper
    assert support_mass(x[:5]).verdict == "UNTESTED" and np.isinf(support_mass(x[:5]).upper)
    json.dumps(base.to_dict())
    with pytest.raises(ValueError):
        support_mass(np.array([0.0, np.inf, 1.0]))
    with pytest.raises(ValueError):
        support_mass(x, level=0.3)
