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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["Interval", "se_from_influence", "oua_variance", "satterthwaite_df", "welch_satterthwaite", "interval",
           "align_influence", "paired_comparison", "paired_comparisons", "two_sided_p_value",
           "two_sided_p_values", "t_quantile", "BATCH_VALUES", "VALUE_BOUNDS", "DIFFERENCE_BOUNDS",
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
    q = t_quantile(df, level)
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
    return float(two_sided_p_values(np.array([estimate], float), np.array([se], float), np.array([df], float))[0])


def two_sided_p_values(estimate: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """:func:`two_sided_p_value` element-wise over arrays of estimates, SEs and dfs."""
    estimate, se, df = (np.asarray(x, float) for x in (estimate, se, df))
    finite_df = np.isfinite(df)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = -np.abs(estimate) / se
        p = np.where(finite_df, 2 * special.stdtr(np.where(finite_df, df, 1.0), t), 2 * special.ndtr(t))
    p = np.where(se <= NUMERICAL_ZERO, np.where(np.abs(estimate) <= NUMERICAL_ZERO, 1.0, 0.0), p)
    return np.where(np.isfinite(estimate) & np.isfinite(se), p, np.nan)


def t_quantile(df: np.ndarray | float, level: float) -> np.ndarray | float:
    """The two-sided t quantile of ``level`` at ``df`` degrees of freedom (normal for a non-finite df).

    A float for a scalar ``df``, an array for an array."""
    d = np.asarray(df, float)
    finite = np.isfinite(d)
    q = np.where(finite, special.stdtrit(np.where(finite, d, 1.0), 0.5 + level / 2), special.ndtri(0.5 + level / 2))
    return float(q) if q.ndim == 0 else q


def welch_satterthwaite(components: list[tuple[float, float]], last: np.ndarray | float | None = None):
    """df of a sum of independent variance estimates: (sum v)^2 / sum (v^2 / df) (Welch, 1947).

    Components with v <= 0 (or NaN) are left out of the denominator; with none left the df is
    that of the last component (or ``last``). Variances and dfs may be arrays (one df per
    element, returned as an array); scalars give a float.
    """
    if not components:
        return float("inf")
    v = [np.asarray(c[0], float) for c in components]
    d = [np.asarray(c[1], float) for c in components]
    num = sum(v) ** 2
    den = sum(np.where(vi > 0, vi * vi / np.maximum(di, 1), 0.0) for vi, di in zip(v, d))
    fallback = d[-1] if last is None else np.asarray(last, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), fallback)
    return float(out) if out.ndim == 0 else out


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
    which ``cje plan`` scales with the number of oracle labels. One pair of
    :func:`paired_comparisons`.
    """
    return paired_comparisons([estimate_a, estimate_b], [ids_a, ids_b], [phi_a, phi_b], [jack_a, jack_b],
                              [(0, 1)], level=level)[0]


# pairs x clusters of one batch of differences (about 32 MB of float64)
BATCH_VALUES = 4_000_000


def paired_comparisons(estimates: Sequence[float], ids: Sequence[np.ndarray], influences: Sequence[np.ndarray],
                       jackknives: Sequence[np.ndarray | None], pairs: Sequence[tuple[int, int]],
                       level: float = 0.95) -> list[dict]:
    """:func:`paired_comparison` of many pairs of estimates at once, vectorised over the pairs.

    Estimates whose cluster ids are identical (the usual case: every policy is estimated on
    the same prompts) are stacked into one matrix, and the pairs among them are computed in
    batches of at most :data:`BATCH_VALUES` influence values: each batch is one subtraction of
    rows, one variance per row and one t quantile per row, never a Python loop over pairs.
    A pair whose ids differ is aligned first (:func:`align_influence`).

    Parameters
    ----------
    estimates : sequence of float
        The point estimate of each policy.
    ids : sequence of ndarray
        The cluster ids of each policy's influence values.
    influences : sequence of ndarray
        Each policy's per-cluster influence values.
    jackknives : sequence of ndarray or None
        Each policy's psi^(-k) per fold, or None when no fitted calibrator enters it.
    pairs : sequence of (int, int)
        Index pairs (a, b) into the sequences above: each gives psi_a - psi_b.
    level : float, default=0.95
        The confidence level.

    Returns
    -------
    list of dict
        One dict per pair, in ``pairs`` order, with the keys of :func:`paired_comparison`.
    """
    est = np.asarray(estimates, float)
    group = _id_groups(ids)
    out: list[dict | None] = [None] * len(pairs)
    batches: dict[tuple, list[int]] = {}
    for i, (a, b) in enumerate(pairs):
        batches.setdefault((group[a] if group[a] == group[b] else None, _jack_size(jackknives[a], jackknives[b])),
                           []).append(i)
    for (g, k), members in batches.items():
        if g is None:  # ids differ: align each pair on the union of its clusters
            for i in members:
                a, b = pairs[i]
                pa, pb = align_influence(ids[a], influences[a], ids[b], influences[b])
                jack = None if k is None else (_jack_row(jackknives[a], est[a], k)
                                               - _jack_row(jackknives[b], est[b], k))[None, :]
                out[i] = _difference_rows(est[a:a + 1] - est[b:b + 1], (pa - pb)[None, :], jack, level)[0]
            continue
        n = max(len(influences[pairs[members[0]][0]]), 1)
        step = max(BATCH_VALUES // n, 1)
        for start in range(0, len(members), step):
            chunk = members[start:start + step]
            ia = np.array([pairs[i][0] for i in chunk])
            ib = np.array([pairs[i][1] for i in chunk])
            used = np.unique(np.concatenate([ia, ib]))
            row = np.full(len(est), -1)
            row[used] = np.arange(used.size)
            phi = np.stack([np.asarray(influences[j], float) for j in used])
            jack = None
            if k is not None:
                jm = np.stack([_jack_row(jackknives[j], est[j], k) for j in used])
                jack = jm[row[ia]] - jm[row[ib]]
            rows = _difference_rows(est[ia] - est[ib], phi[row[ia]] - phi[row[ib]], jack, level)
            for i, r in zip(chunk, rows):
                out[i] = r
    return out  # type: ignore[return-value]


def _id_groups(ids: Sequence[np.ndarray]) -> list[int]:
    """Group number of each id array: equal arrays (same ids, same order) share a group."""
    reps: list[np.ndarray] = []
    group = []
    for x in ids:
        for g, rep in enumerate(reps):
            if x is rep or (len(x) == len(rep) and np.array_equal(x, rep)):
                group.append(g)
                break
        else:
            reps.append(x)
            group.append(len(reps) - 1)
    return group


def _jack_size(jack_a: np.ndarray | None, jack_b: np.ndarray | None) -> int | None:
    """Folds of the difference's jackknife: None when neither side has one or their sizes differ.

    An estimate without a jackknife applies no calibrator: its psi^(-k) is constant, so the
    difference keeps the other side's oracle variance (never silently dropped)."""
    if jack_a is None and jack_b is None:
        return None
    k = len(jack_a if jack_a is not None else jack_b)
    if jack_a is not None and jack_b is not None and len(jack_b) != k:
        return None
    return k


def _jack_row(jack: np.ndarray | None, estimate: float, k: int) -> np.ndarray:
    return np.full(k, estimate) if jack is None else np.asarray(jack, float)


def _difference_rows(difference: np.ndarray, phi: np.ndarray, jack: np.ndarray | None, level: float) -> list[dict]:
    """Row-wise :func:`interval` of differences (no parts, :data:`DIFFERENCE_BOUNDS`) with p-values.

    ``phi`` is pairs x clusters (the aligned influence differences), ``jack`` pairs x folds
    (the jackknife differences; NaN entries are ignored as in :func:`oua_variance`) or None."""
    m, n = phi.shape
    var_rest = np.var(phi, axis=1, ddof=1) / n if n > 1 else np.full(m, np.nan)
    se_base = np.sqrt(var_rest)
    if jack is None:
        var_oracle, folds = np.full(m, np.nan), np.zeros(m)
    else:
        finite = np.isfinite(jack)
        folds = finite.sum(axis=1).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(finite, jack, 0.0).sum(axis=1) / folds
            ss = np.where(finite, (jack - mean[:, None]) ** 2, 0.0).sum(axis=1)
            var_oracle = np.where(folds >= 2, (folds - 1) / folds * ss, np.nan)
    se = np.sqrt(se_base ** 2 + np.nan_to_num(var_oracle, nan=0.0))
    has_oracle = np.isfinite(var_oracle) & (var_oracle != 0)
    # Welch-Satterthwaite over the influence part (n - 1) and the jackknife (K - 1)
    rest = np.nan_to_num(var_rest, nan=0.0) if n <= 1 else var_rest
    df = welch_satterthwaite([(rest, np.full(m, n - 1.0)),
                              (np.where(has_oracle, var_oracle, 0.0), np.maximum(folds - 1, 1))],
                             last=np.where(has_oracle, np.maximum(folds - 1, 1), n - 1.0))
    q = t_quantile(df, level)
    lower = np.clip(difference - q * se, *DIFFERENCE_BOUNDS)
    upper = np.clip(difference + q * se, *DIFFERENCE_BOUNDS)
    p = two_sided_p_values(difference, se, df)
    zero = (p == 1.0) & (se <= NUMERICAL_ZERO)  # identical up to rounding: say 0 (no CI may
    difference = np.where(zero, 0.0, difference)  # exclude 0 by 1e-17)
    lower, upper = np.where(zero, 0.0, lower), np.where(zero, 0.0, upper)
    return [{"difference": float(difference[i]), "se": float(se[i]), "ci_lower": float(lower[i]),
             "ci_upper": float(upper[i]), "df": float(df[i]), "p_value": float(p[i]),
             "se_without_oua": float(se_base[i]),
             "oracle_variance": float(var_oracle[i]) if np.isfinite(var_oracle[i]) else None} for i in range(m)]


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
