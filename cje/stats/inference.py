"""Influence-function inference with oracle uncertainty (statistics.md section 6).

* Base SE: cluster-robust over prompts from the per-prompt influence values phi_c,
  SE_base = sqrt(var(phi_c) / n_c) (an estimator psi satisfies
  psi_hat - psi ~ mean_c phi_c).
* OUA: the estimate recomputed with each fold's calibrator f^(-k) gives psi^(-k);
  Var_oracle = (K - 1) / K * sum_k (psi^(-k) - mean_k psi^(-k))^2 (delete-a-group
  jackknife: a sum, not a mean). SE_total = sqrt(SE_base^2 + Var_oracle).
* CI: Student t with Welch-Satterthwaite degrees of freedom combining n_c - 1
  (sampling) and K - 1 (oracle) -- the jackknife variance rests on K folds only,
  and a normal quantile would over-state its precision at low oracle coverage.
* Paired comparison: the difference of aligned influence functions plus the OUA
  of the difference of the jackknife estimates (a side without a jackknife, e.g. R = Y
  at 100% coverage, counts as constant, so the other side's oracle variance stays).
  Two-sided p-value from the same t (:func:`two_sided_p_value`); a difference with SE 0
  (numerically) has p = 1 when it is 0 (an A/A comparison: identical estimates) and p = 0
  otherwise.
* Bounds: values are in [0, 1] (judge scores, oracle labels and every reward are), so the
  interval of a value is clipped to [0, 1] and that of a difference of two values to
  [-1, 1] (``bounds``); the point estimate and the SE are never changed.

Reference: Efron & Stein (1981) for the jackknife; Welch (1947) for the df.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["Interval", "se_from_influence", "oua_variance", "satterthwaite_df", "welch_satterthwaite", "interval",
           "align_influence", "paired_comparison", "two_sided_p_value", "VALUE_BOUNDS", "DIFFERENCE_BOUNDS",
           "NUMERICAL_ZERO", "weighted_label_residual"]

VALUE_BOUNDS = (0.0, 1.0)  # a policy value: a mean of rewards in [0, 1]
DIFFERENCE_BOUNDS = (-1.0, 1.0)  # the difference of two such values
# An SE (or a difference) at most this large is 0 up to floating-point error: values are in
# [0, 1], and the rounding error of a mean of n <= 1e9 of them is below 1e-12.
NUMERICAL_ZERO = 1e-12


@dataclass(frozen=True)
class Interval:
    """A point estimate with its standard errors and confidence interval."""

    estimate: float
    se: float
    se_without_oua: float
    oracle_variance: float | None
    ci_lower: float
    ci_upper: float
    df: float
    level: float


def se_from_influence(influence: np.ndarray) -> float:
    """Cluster-robust SE from per-cluster influence values: sqrt(var(phi, ddof=1) / n)."""
    phi = np.asarray(influence, float)
    if phi.size < 2:
        return float("nan")
    return float(np.sqrt(np.var(phi, ddof=1) / phi.size))


def oua_variance(jackknife_estimates: np.ndarray | None) -> float | None:
    """Var_oracle = (K-1)/K * sum_k (psi^(-k) - mean psi^(-k))^2, or None when not available."""
    if jackknife_estimates is None:
        return None
    psi = np.asarray(jackknife_estimates, float)
    psi = psi[np.isfinite(psi)]
    if psi.size < 2:
        return None
    k = psi.size
    return float((k - 1) / k * np.sum((psi - psi.mean()) ** 2))


def satterthwaite_df(var_base: float, df_base: float, var_oracle: float | None, df_oracle: float) -> float:
    """Welch-Satterthwaite df of var_base + var_oracle: (v_b + v_o)^2 / (v_b^2/df_b + v_o^2/df_o)."""
    if var_oracle is None or var_oracle <= 0:
        return float(df_base)
    return welch_satterthwaite([(var_base, df_base), (var_oracle, df_oracle)])


def interval(estimate: float, influence: np.ndarray, jackknife_estimates: np.ndarray | None,
             level: float = 0.95, use_oua: bool = True,
             parts: list[tuple[np.ndarray, float]] | None = None,
             bounds: tuple[float, float] | None = None) -> Interval:
    """Combine the influence-function SE and the OUA jackknife into a t interval.

    Inputs: point estimate; per-cluster influence values; psi^(-k) per fold (or None when
    no fitted calibrator enters the estimate); confidence level; optional ``parts``: pieces
    of ``influence`` that average over few units (tr-cpo's label term over the labelled
    rows, a probe-label correction over the probes), each with its degrees of freedom. They
    change only the df: Welch-Satterthwaite over the rest of the IF (n - 1), each part and
    the oracle jackknife (K - 1). Optional ``bounds`` (lo, hi): the range the value cannot
    leave (:data:`VALUE_BOUNDS` for a policy value, :data:`DIFFERENCE_BOUNDS` for a paired
    difference); the CI is clipped to it (``0.445 [-0.063, 0.953]`` is reported as
    ``[0.000, 0.953]``: a value in [0, 1] is never below 0). Only the CI is clipped: the
    point estimate and the SE are unchanged (an estimate outside the bounds, possible for
    a DR correction, stays as computed), and so are the p-value and a CI's exclusion of 0
    (0 is inside both bounds). Output: :class:`Interval` (``df`` is the t df used).
    """
    se_base = se_from_influence(influence)
    var_oracle = oua_variance(jackknife_estimates) if use_oua else None
    total = float(np.sqrt(se_base ** 2 + (var_oracle or 0.0)))
    n_folds = 0 if jackknife_estimates is None else int(np.isfinite(jackknife_estimates).sum())
    components = []
    rest = np.asarray(influence, float)
    for part, df_part in parts or []:
        part = np.asarray(part, float)
        rest = rest - part
        components.append((np.var(part, ddof=1) / part.size, df_part))
    components.append((np.var(rest, ddof=1) / max(rest.size, 1) if rest.size > 1 else 0.0, len(influence) - 1))
    if var_oracle:
        components.append((var_oracle, max(n_folds - 1, 1)))
    df = welch_satterthwaite(components)
    q = float(special.stdtrit(df, 0.5 + level / 2)) if np.isfinite(df) else float(special.ndtri(0.5 + level / 2))
    lower, upper = float(estimate - q * total), float(estimate + q * total)
    if bounds is not None:  # np.clip keeps NaN (an SE that cannot be estimated) as NaN
        lower, upper = (float(np.clip(v, bounds[0], bounds[1])) for v in (lower, upper))
    return Interval(estimate=float(estimate), se=total, se_without_oua=se_base, oracle_variance=var_oracle,
                    ci_lower=lower, ci_upper=upper, df=df, level=level)


def two_sided_p_value(estimate: float, se: float, df: float) -> float:
    """Two-sided p-value of H0: value = 0, from t = estimate / se with ``df`` degrees of freedom.

    An SE of 0 (up to :data:`NUMERICAL_ZERO`) means no sampling variability: the p-value is 1
    when the estimate is 0 too (an A/A comparison -- identical log-probs give identical
    estimates and influence functions; t = 0/0 is not evidence of a difference) and 0 when it
    is not (a difference that is certain). A non-finite estimate or SE gives NaN (unknown, shown
    as 'n/a'); an infinite df is the normal distribution.
    """
    if not (np.isfinite(estimate) and np.isfinite(se)):
        return float("nan")
    if se <= NUMERICAL_ZERO:
        return 1.0 if abs(estimate) <= NUMERICAL_ZERO else 0.0
    t = abs(estimate) / se
    return float(2 * special.stdtr(df, -t)) if np.isfinite(df) else float(2 * special.ndtr(-t))


def welch_satterthwaite(components: list[tuple[float, float]]) -> float:
    """df of a sum of independent variance estimates: (sum v)^2 / sum (v^2 / df) (Welch, 1947)."""
    num = sum(v for v, _ in components) ** 2
    den = sum(v * v / max(d, 1) for v, d in components if v > 0)
    if den <= 0:
        return float(components[-1][1]) if components else float("inf")
    return float(num / den)


def align_influence(ids_a: np.ndarray, phi_a: np.ndarray, ids_b: np.ndarray,
                    phi_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put two influence vectors on the union of their cluster ids (0 where a cluster is absent).

    Each input is rescaled by n_own / n_union so that the mean over the union equals
    its original mean contribution. Same ids in the same order (the usual case) is
    an O(n) check; otherwise a polars hash join (no Python loop, no string sort).
    """
    phi_a, phi_b = np.asarray(phi_a, float), np.asarray(phi_b, float)
    if len(ids_a) == len(ids_b) and np.array_equal(ids_a, ids_b):
        return phi_a, phi_b
    import polars as pl

    joined = pl.DataFrame({"id": np.asarray(ids_a, dtype=str), "a": phi_a}).join(
        pl.DataFrame({"id": np.asarray(ids_b, dtype=str), "b": phi_b}), on="id", how="full", coalesce=True)
    n_union = joined.height
    a = joined.get_column("a").fill_null(0.0).to_numpy() * (n_union / max(len(ids_a), 1))
    b = joined.get_column("b").fill_null(0.0).to_numpy() * (n_union / max(len(ids_b), 1))
    return a, b


def paired_comparison(estimate_a: float, ids_a: np.ndarray, phi_a: np.ndarray, jack_a: np.ndarray | None,
                      estimate_b: float, ids_b: np.ndarray, phi_b: np.ndarray, jack_b: np.ndarray | None,
                      level: float = 0.95) -> dict:
    """Difference psi_a - psi_b with a paired SE, OUA of the difference, CI and two-sided p-value.

    The CI is clipped to [-1, 1] (:data:`DIFFERENCE_BOUNDS`). The p-value is
    :func:`two_sided_p_value`: 1 for a zero difference with zero SE (an A/A comparison: same
    estimate, same influence function, same jackknife), whose difference and CI are then
    reported as exactly 0 (not +-1e-17 of rounding).

    Also returns the two parts of the variance, ``se_without_oua`` (paired influence
    functions) and ``oracle_variance`` (jackknife of the difference; None without OUA),
    which ``cje plan`` scales with the number of oracle labels.
    """
    pa, pb = align_influence(ids_a, phi_a, ids_b, phi_b)
    jack = None
    if jack_a is not None or jack_b is not None:
        # an estimate without a jackknife applies no calibrator: its psi^(-k) is constant, so
        # the difference keeps the other side's oracle variance (never silently dropped)
        k = len(jack_a if jack_a is not None else jack_b)
        ja = np.full(k, estimate_a) if jack_a is None else np.asarray(jack_a, float)
        jb = np.full(k, estimate_b) if jack_b is None else np.asarray(jack_b, float)
        if ja.size == jb.size:
            jack = ja - jb
    res = interval(estimate_a - estimate_b, pa - pb, jack, level=level, bounds=DIFFERENCE_BOUNDS)
    p = two_sided_p_value(res.estimate, res.se, res.df)
    difference, lower, upper = res.estimate, res.ci_lower, res.ci_upper
    if p == 1.0 and res.se <= NUMERICAL_ZERO:  # identical up to rounding: say 0 (no CI may
        difference = lower = upper = 0.0       # exclude 0 by 1e-17)
    return {"difference": difference, "se": res.se, "ci_lower": lower,
            "ci_upper": upper, "df": res.df, "p_value": p,
            "se_without_oua": res.se_without_oua, "oracle_variance": res.oracle_variance}


def weighted_label_residual(weights: np.ndarray, labelled: np.ndarray, labels: np.ndarray,
                            calibrated: np.ndarray) -> tuple[float, np.ndarray] | None:
    """delta = sum_L W (Y - f(S)) / sum_L W and its influence L W (e - delta) / mean(L W) over all rows.

    The tr-cpo label term and audit (b). Returns None with fewer than 2 labelled rows or no
    weight on them.
    """
    L = np.asarray(labelled, bool)
    w = np.asarray(weights, float)
    sw = float(w[L].sum())
    if L.sum() < 2 or sw <= 0:
        return None
    e = np.where(L, np.asarray(labels, float) - np.asarray(calibrated, float), 0.0)
    delta = float(np.sum(w * e) / sw)
    return delta, np.where(L, w * (e - delta), 0.0) / (sw / w.size)
