"""Per-policy diagnostics and the one status ladder (statistics.md section 7).

Pure functions on numpy arrays. The ladder (GOOD < WARNING < CRITICAL) is the
same for every surface (JSON, CSV, dashboard, terminal):

===========================  ==========  ===========
rule                         WARNING     CRITICAL
===========================  ==========  ===========
ESS fraction (raw weights)   < 0.30      < 0.10
Hill tail index              < 2         < 1
judge-space overlap (BC)     < 0.85      < 0.50
transport audit              --          FAIL
rows dropped for the policy  > 10%       > 50%
===========================  ==========  ===========

The rows marked ESS, Hill and transport act through the estimate's assumption
ledger (:mod:`cje.checks`): weight rules only for estimates that rest on the
weights ('overlap'), the transport audit only for estimates that rest on
transport, and any assumption an estimate rests on that was not checked caps it
at WARNING (GOOD means checked). The overlap rule applies to every estimator (a
target whose responses score unlike the logged ones is outside what the logged
data and judge were checked on). ``naive`` rests on "the judge is the metric",
which nothing checks, so it is never better than WARNING.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["ess_fraction", "max_weight", "top_share", "hill_tail_index", "hellinger_affinity",
           "bhattacharyya_overlap", "out_of_range_mass", "transport_audit", "weight_diagnostics",
           "Status", "policy_status", "STATUS_ORDER"]

STATUS_ORDER = {"GOOD": 0, "WARNING": 1, "CRITICAL": 2}
ESS_GOOD, ESS_WARN = 0.30, 0.10
HILL_WARN, HILL_CRIT = 2.0, 1.0
OVERLAP_GOOD, OVERLAP_CRIT = 0.85, 0.50


def ess_fraction(weights: np.ndarray) -> float:
    """Effective sample size fraction (sum W)^2 / (n sum W^2) (Kish, 1965); in (0, 1]."""
    w = np.asarray(weights, float)
    denom = w.size * np.sum(w ** 2)
    return float(np.sum(w) ** 2 / denom) if denom > 0 else 0.0


def max_weight(weights: np.ndarray) -> float:
    """Largest weight (weights normalised to mean 1, so n is the ceiling)."""
    return float(np.max(weights)) if len(weights) else float("nan")


def top_share(weights: np.ndarray, fraction: float = 0.05) -> float:
    """Share of the total weight carried by the top ``fraction`` of rows."""
    w = np.sort(np.asarray(weights, float))[::-1]
    k = max(1, int(np.ceil(fraction * w.size)))
    total = w.sum()
    return float(w[:k].sum() / total) if total > 0 else float("nan")


def hill_tail_index(weights: np.ndarray, k: int | None = None) -> float:
    """Hill estimator of the tail index alpha of the weight distribution.

    alpha = 1 / mean_{i<=k} log(W_(i) / W_(k+1)) over the k largest weights,
    k = max(10, 5% of n) (Hill, 1975). alpha < 2: infinite variance; < 1: infinite mean.
    Returns inf when the top weights are all equal (no tail).
    """
    w = np.sort(np.asarray(weights, float))[::-1]
    w = w[w > 0]
    if k is None:
        k = max(10, int(0.05 * w.size))
    if w.size <= k + 1:
        return float("nan")
    logs = np.log(w[:k] / w[k])
    m = logs.mean()
    return float(1.0 / m) if m > 1e-12 else float("inf")  # (near-)equal top weights: no tail


def hellinger_affinity(weights: np.ndarray) -> float:
    """mean(sqrt(W)) for mean-1 weights: the Bhattacharyya affinity of pi' and pi0 on the logged
    support (1 = identical policies; near 0 = disjoint)."""
    return float(np.mean(np.sqrt(np.maximum(weights, 0))))


def bhattacharyya_overlap(target_scores: np.ndarray, logged_scores: np.ndarray,
                          logged_weights: np.ndarray | None = None, bins: int = 20) -> float:
    """Bhattacharyya coefficient sum_b sqrt(p_b q_b) between judge-score histograms on [0, 1].

    p: fresh-draw scores S' of the target; q: logged scores S, optionally weighted
    (with importance weights, q estimates the target's score distribution through
    the logged rows). 1 = same distribution, 0 = disjoint.
    """
    edges = np.linspace(0, 1, bins + 1)
    p, _ = np.histogram(target_scores, edges)
    q, _ = np.histogram(logged_scores, edges, weights=logged_weights)
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    return float(np.sum(np.sqrt(p / p.sum() * q / q.sum())))


def out_of_range_mass(target_scores: np.ndarray, score_range: tuple[float, float]) -> float:
    """Share of target scores outside the oracle-labelled score range [min S_L, max S_L]."""
    s = np.asarray(target_scores, float)
    if s.size == 0:
        return float("nan")
    return float(np.mean((s < score_range[0]) | (s > score_range[1])))


def transport_audit(oracle_labels: np.ndarray, calibrated: np.ndarray, margin: float = 0.05,
                    level: float = 0.95, se_estimate: float | None = None) -> dict:
    """Does the base-policy calibration transport to this target? (probe labels, audit (a)).

    delta = mean(Y - f(S')) over the target's probe-labelled fresh draws, with a t
    interval; the verdict is :func:`cje.checks.audit_verdict` (FAIL: CI excludes 0 and
    |delta| > margin; PASS: CI inside +-min(margin, ``se_estimate``); else UNTESTED).
    """
    from cje.checks import audit_verdict, probe_audit

    audit = probe_audit(oracle_labels, calibrated, margin, level)
    if audit is None:
        return {"status": "NOT_RUN", "n_probe": int(np.size(oracle_labels)), "reason": "fewer than 2 probe labels"}
    return {**audit.to_dict(audit_verdict(audit, se_estimate)), "n_probe": audit.n}


def weight_diagnostics(weights: np.ndarray) -> dict:
    """ESS fraction, max weight, top-5% share, Hill index and Hellinger affinity of one weight vector."""
    return {"ess": ess_fraction(weights), "max_weight": max_weight(weights),
            "top5_share": top_share(weights), "hill_index": hill_tail_index(weights),
            "hellinger_affinity": hellinger_affinity(weights)}


@dataclass(frozen=True)
class Status:
    """A status on the ladder with the reasons that put it there."""

    status: str
    reasons: list[str]

    @property
    def reliable(self) -> bool:
        return self.status != "CRITICAL"


def policy_status(*, assumptions: list[dict], overlap: float | None, drop_fraction: float,
                  failure: str | None = None) -> Status:
    """Apply the ladder (statistics.md 7, revised: GOOD is a claim that the assumptions were checked).

    assumptions : the estimate's ledger (:func:`cje.checks.assumption_ledger`): an entry that
        FAILs makes the policy CRITICAL; one that is UNTESTED caps it at WARNING, with the
        reason and the fix. Weight rules (ESS, Hill) enter through the 'overlap' entry, so
        weights that contribute nothing to an estimate never lower its status.
    overlap : judge-score overlap (Bhattacharyya) of fresh draws and logged rows (every estimator).
    drop_fraction : share of rows dropped for the policy; failure : a per-policy failure message.
    """
    from cje.checks import FIXES

    level, reasons = 0, []

    def bump(to: str, why: str) -> None:
        nonlocal level
        level = max(level, STATUS_ORDER[to])
        reasons.append(why)

    if failure:
        bump("CRITICAL", failure)
    if drop_fraction > 0.5:
        bump("CRITICAL", f"{drop_fraction:.0%} of rows dropped for invalid log-probs or scores")
    elif drop_fraction > 0.1:
        bump("WARNING", f"{drop_fraction:.0%} of rows dropped for invalid log-probs or scores")
    if overlap is not None and np.isfinite(overlap):
        if overlap < OVERLAP_CRIT:
            bump("CRITICAL", f"judge-score overlap {overlap:.2f} < {OVERLAP_CRIT}: the target's responses "
                             "score unlike the logged ones, so the calibration may not transport")
        elif overlap < OVERLAP_GOOD:
            bump("WARNING", f"judge-score overlap {overlap:.2f} < {OVERLAP_GOOD}")
    for a in assumptions:
        if a["status"] == "FAIL":
            bump("CRITICAL", f"assumption '{a['id']}' FAILED: {a['evidence']}")
        elif a["status"] == "UNTESTED" and a["id"] == "judge_is_metric":
            bump("CRITICAL", "naive is a reference only: the raw judge mean is not on the oracle scale unless an "
                             f"audit shows it ({a['evidence']}); use a calibrated estimator")
        elif a["status"] == "UNTESTED":
            fix = FIXES.get(a["id"])
            bump("WARNING", f"assumption '{a['id']}' not checked ({a['evidence']})"
                            + (f"; to check it: {fix}" if fix else ""))
    name = {v: k for k, v in STATUS_ORDER.items()}[level]
    return Status(name, reasons)
