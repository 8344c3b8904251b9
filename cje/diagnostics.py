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

Weight rules apply to estimators whose estimate is a weighted average (IPS);
for doubly robust estimators the weights only enter a correction term, so poor
weights cap the status at WARNING. The overlap rule applies to every estimator
(a target whose responses score unlike the logged ones is outside what the
logged data and judge were checked on); the transport rule to every estimator
that transports the base-policy calibration. ``naive`` is never better than
WARNING: it is not on the oracle scale.
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
    return float(1.0 / m) if m > 0 else float("inf")


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
                    level: float = 0.95) -> dict:
    """Does the base-policy calibration transport to this target?

    delta = mean(Y - f(S')) over the target's probe-labelled fresh draws, with a
    t interval; FAIL when the interval excludes 0 and |delta| > margin.
    """
    r = np.asarray(oracle_labels, float) - np.asarray(calibrated, float)
    n = r.size
    if n < 2:
        return {"status": "NOT_RUN", "n_probe": int(n), "reason": "fewer than 2 probe labels"}
    delta = float(r.mean())
    se = float(r.std(ddof=1) / np.sqrt(n))
    q = float(special.stdtrit(n - 1, 0.5 + level / 2))
    lo, hi = delta - q * se, delta + q * se
    fail = (lo > 0 or hi < 0) and abs(delta) > margin
    return {"status": "FAIL" if fail else "PASS", "n_probe": int(n), "delta": delta, "se": se,
            "ci_lower": lo, "ci_upper": hi, "margin": margin}


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


def policy_status(*, weight_role: str, raw_weights: dict | None, overlap: float | None,
                  transport: dict | None, drop_fraction: float, uses_calibration: bool,
                  failure: str | None = None) -> Status:
    """Apply the ladder. ``weight_role`` is 'primary' (IPS), 'correction' (DR) or 'none'."""
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
    if raw_weights is not None and weight_role != "none":
        cap = "CRITICAL" if weight_role == "primary" else "WARNING"
        ess, hill = raw_weights["ess"], raw_weights["hill_index"]
        if ess < ESS_WARN:
            bump(cap, f"raw-weight ESS {ess:.1%} < {ESS_WARN:.0%}: almost no overlap between the "
                      "policies' responses")
        elif ess < ESS_GOOD:
            bump("WARNING", f"raw-weight ESS {ess:.1%} < {ESS_GOOD:.0%}")
        if np.isfinite(hill) and hill < HILL_CRIT:
            bump(cap, f"Hill tail index {hill:.2f} < {HILL_CRIT:g}: weight tail has infinite mean")
        elif np.isfinite(hill) and hill < HILL_WARN:
            bump("WARNING", f"Hill tail index {hill:.2f} < {HILL_WARN:g}: weight tail has infinite variance")
    if not uses_calibration:
        bump("WARNING", "uncalibrated: the raw judge mean is not on the oracle scale (reference only)")
    if overlap is not None and np.isfinite(overlap):
        if overlap < OVERLAP_CRIT:
            bump("CRITICAL", f"judge-score overlap {overlap:.2f} < {OVERLAP_CRIT}: the target's responses "
                             "score unlike the logged ones, so the calibration may not transport")
        elif overlap < OVERLAP_GOOD:
            bump("WARNING", f"judge-score overlap {overlap:.2f} < {OVERLAP_GOOD}")
    if uses_calibration and transport is not None and transport.get("status") == "FAIL":
        bump("CRITICAL", f"transport audit FAIL: mean residual {transport['delta']:+.3f} on "
                         f"{transport['n_probe']} probe labels")
    name = {v: k for k, v in STATUS_ORDER.items()}[level]
    return Status(name, reasons)
