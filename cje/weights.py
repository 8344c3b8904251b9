"""Importance weights: Hajek, clipping, SIMCal-W (statistics.md section 4).

All functions take and return numpy arrays over the rows valid for one target
policy; every returned weight vector has mean exactly 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cje.calibration import fit_isotonic

__all__ = ["WeightError", "hajek_weights", "clip_weights", "SimcalResult", "simcal_weights",
           "simplex_min_variance"]


class WeightError(ValueError):
    """Weights that cannot be used (all zero or non-finite): a loud per-policy failure."""


def _check(weights: np.ndarray, what: str) -> np.ndarray:
    if weights.size == 0:
        raise WeightError(f"{what}: no rows")
    if not np.all(np.isfinite(weights)):
        raise WeightError(f"{what}: {int((~np.isfinite(weights)).sum())} non-finite weights")
    if weights.sum() <= 0:
        raise WeightError(f"{what}: all weights are zero")
    return weights


def hajek_weights(target_logprobs: np.ndarray, base_logprobs: np.ndarray) -> np.ndarray:
    """Self-normalised importance weights, computed stably.

    W_i = n exp(lr_i - max lr) / sum_j exp(lr_j - max lr),  lr = lp_target - lp_base,
    so mean(W) = 1 exactly (Hajek, 1971). Rows whose ratio underflows get weight 0.
    """
    lr = np.asarray(target_logprobs, float) - np.asarray(base_logprobs, float)
    if lr.size == 0:
        raise WeightError("hajek weights: no rows")
    e = np.exp(lr - lr.max())
    return _check(lr.size * e / e.sum(), "hajek weights")


def clip_weights(weights: np.ndarray, clip: float = 100.0) -> np.ndarray:
    """min(W, clip), renormalised to mean 1 (one pass; used by ``raw-ips``)."""
    clipped = np.minimum(weights, clip)
    return _check(clipped / clipped.mean(), "clipped weights")


def simplex_min_variance(cov: np.ndarray) -> np.ndarray:
    """argmin_a a' C a over the probability simplex {a >= 0, sum a = 1}, exactly.

    Input: (J, J) covariance of the candidates' influence functions (J small).
    Output: the minimiser. Enumerates supports S (2^J - 1 of them): on a support the
    equality-constrained optimum is a_S = C_S^+ 1 / (1' C_S^+ 1); the best feasible
    (a_S >= 0) one is the global minimum, since the problem is convex.
    """
    from itertools import combinations

    cov = np.asarray(cov, float)
    j = cov.shape[0]
    best, best_value = np.full(j, 1.0 / j), np.inf
    for size in range(1, j + 1):
        for support in combinations(range(j), size):
            idx = list(support)
            sub = cov[np.ix_(idx, idx)]
            x = np.linalg.pinv(sub) @ np.ones(size)
            total = x.sum()
            if abs(total) < 1e-300:
                continue
            a_sub = x / total
            if np.any(a_sub < -1e-12):
                continue
            a = np.zeros(j)
            a[idx] = np.clip(a_sub, 0, None)
            a /= a.sum()
            value = float(a @ cov @ a)
            if value < best_value - 1e-15 * max(1.0, abs(value)):
                best, best_value = a, value
    return best


@dataclass(frozen=True)
class SimcalResult:
    """Calibrated weights and how they were built."""

    weights: np.ndarray
    stacking_weights: dict[str, float]
    blend_gamma: float
    variance_raw: float
    variance_calibrated: float


def simcal_weights(raw_weights: np.ndarray, ordering_scores: np.ndarray, rewards: np.ndarray,
                   folds: np.ndarray, n_folds: int, rho: float = 1.0) -> SimcalResult:
    """SIMCal-W: out-of-fold monotone projection of the weights (statistics.md 4).

    1. For each fold k, isotonic fits of W on the ordering score (the out-of-fold
       calibrated reward f^(oof)(S)), increasing and decreasing, trained on the other
       folds and applied to fold k; each candidate renormalised to mean 1.
    2. Keep the direction(s) whose out-of-fold squared error in predicting W is not
       worse than the other's by more than one standard error (the wrong direction is
       a flat, biased fit), then stack the kept candidates with simplex weights
       minimising the variance of the IPS influence function W_j (R - psi_j)
       (:func:`simplex_min_variance`).
    3. Blend toward 1, W = 1 + gamma (W_stack - 1), with the largest gamma <= 1 such
       that Var(W) <= rho * Var(W_raw); renormalise to mean 1.

    Inputs are aligned arrays over the policy's valid rows; ``rho`` (default 1)
    bounds the variance of the calibrated weights relative to the raw ones.
    Raises :class:`WeightError` when the result is unusable (never a silent fallback).
    Reference: Landesberg et al. (2025), arXiv:2512.11150, sec. 4 (SIMCal).
    """
    w = np.asarray(raw_weights, float)
    s = np.asarray(ordering_scores, float)
    candidates, errors = {}, {}
    for name, increasing in (("increasing", True), ("decreasing", False)):
        out = np.empty(w.size)
        for k in range(n_folds):  # K fits, each vectorised
            test = folds == k
            if not test.any():
                continue
            train = ~test
            if train.sum() < 2:
                train = np.ones(w.size, bool)
            fit = fit_isotonic(s[train], w[train], increasing=increasing, y_min=0.0, y_max=None)
            out[test] = fit(s[test])
        if out.sum() > 0 and np.all(np.isfinite(out)):
            candidates[name] = out / out.mean()
            errors[name] = (out - w) ** 2
    if not candidates:
        raise WeightError("SIMCal-W: every monotone projection of the weights is zero or non-finite")
    if len(candidates) == 2:
        # Only a projection close to E[W | S] keeps IPS unbiased; the wrong direction gives
        # nearly flat weights whose lower variance would win the stacking and pull the
        # estimate toward the base policy. Drop a direction whose out-of-fold error in
        # predicting W is worse by more than one standard error.
        diff = errors["increasing"] - errors["decreasing"]
        se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
        if diff.mean() > se:
            candidates.pop("increasing")
        elif -diff.mean() > se:
            candidates.pop("decreasing")
    names = list(candidates)
    influence = np.column_stack([c * (rewards - np.mean(c * rewards)) for c in candidates.values()])
    cov = np.atleast_2d(np.cov(influence, rowvar=False))
    alpha = simplex_min_variance(cov)
    stacked = sum(a * candidates[n] for a, n in zip(alpha, names))
    var_raw = float(np.var(w))
    var_stacked = float(np.var(stacked))
    gamma = 1.0
    if var_stacked > rho * var_raw and var_stacked > 0:
        gamma = float(np.sqrt(rho * var_raw / var_stacked))
    blended = 1.0 + gamma * (stacked - 1.0)
    blended = _check(np.maximum(blended, 0.0), "SIMCal-W weights")
    blended = blended / blended.mean()
    return SimcalResult(weights=blended, stacking_weights={n: float(a) for n, a in zip(names, alpha)},
                        blend_gamma=gamma, variance_raw=var_raw, variance_calibrated=float(np.var(blended)))
