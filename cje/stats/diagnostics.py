"""Per-policy diagnostics of importance weights and judge scores (statistics.md section 7).

Pure functions on numpy arrays: ESS, max weight, top-5% share, Hill tail index,
Hellinger affinity, judge-score overlap, out-of-range mass. What they mean for a
status is decided in :mod:`cje.checks.status`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ess_fraction", "max_weight", "top_share", "hill_tail_index", "hellinger_affinity",
           "bhattacharyya_overlap", "out_of_range_mass", "weight_diagnostics"]


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


def weight_diagnostics(weights: np.ndarray) -> dict:
    """ESS fraction, max weight, top-5% share, Hill index and Hellinger affinity of one weight vector."""
    return {"ess": ess_fraction(weights), "max_weight": max_weight(weights),
            "top5_share": top_share(weights), "hill_index": hill_tail_index(weights),
            "hellinger_affinity": hellinger_affinity(weights)}
