"""Per-policy diagnostics of importance weights and judge scores (statistics.md section 7).

Pure functions on numpy arrays: ESS, max weight, top-5% share, Hill tail index,
Hellinger affinity, judge-score overlap, out-of-range mass. What they mean for a
status is decided in :mod:`cje.checks.status`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["ess_fraction", "max_weight", "top_share", "hill_tail_index", "hellinger_affinity",
           "bhattacharyya_overlap", "out_of_range_mass", "weight_diagnostics", "SupportMass", "support_mass",
           "SUPPORT_LEVEL", "SUPPORT_TOLERANCE", "ESS_GOOD", "ESS_WARN", "HILL_WARN", "HILL_CRIT",
           "overlap_is_evidenced"]

# Overlap thresholds of the raw importance weights (statistics.md 7c): PASS needs ESS >= ESS_GOOD
# and a Hill tail index >= HILL_WARN (with a PASSing support check); FAIL below ESS_WARN or HILL_CRIT.
ESS_GOOD, ESS_WARN = 0.30, 0.10
HILL_WARN, HILL_CRIT = 2.0, 1.0

# The support check (statistics.md 7c "Support", :func:`support_mass`): one-sided bounds at a fixed
# level (not --level), and missing mass is claimed only when the upper bound of the mean ratio is
# below 1 - SUPPORT_TOLERANCE.
SUPPORT_LEVEL = 0.99
SUPPORT_TOLERANCE = 0.10


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


@dataclass(frozen=True)
class SupportMass:
    """The mean of the unnormalised importance ratios, with one-sided bounds (:func:`support_mass`).

    n : logged rows used. m : mean_i exp(lp_t,i - lp_b,i).
    lower, upper : one-sided bounds for E[m] at ``level`` each (together a 1 - 2 (1 - level)
        two-sided interval); ``upper`` is inf when the tail cannot bound the mean.
    hill_index : Hill tail index of the ratios (k = max(10, 5% of n), as in
        :func:`hill_tail_index`); <= 1 (an infinite mean) makes ``upper`` inf.
    tail_index_lower : the lower confidence bound of the Pareto index of the top ratios
        used for the upper bound (inf: no tail).
    verdict : 'FAIL' (clear missing mass: upper < 1 - tolerance), 'PASS' (lower >= 1 -
        tolerance) or 'UNTESTED' (neither); reason : one sentence saying why.
    """

    n: int
    m: float
    lower: float
    upper: float
    hill_index: float
    tail_index_lower: float
    level: float
    tolerance: float
    verdict: str
    reason: str

    @property
    def missing(self) -> bool:
        """True when the data show clear missing mass (the target puts mass where the base never goes)."""
        return self.verdict == "FAIL"

    def to_dict(self) -> dict:
        return {"n": self.n, "m": self.m, "lower": self.lower, "upper": self.upper,
                "hill_index": self.hill_index, "tail_index_lower": self.tail_index_lower, "level": self.level,
                "tolerance": self.tolerance, "verdict": self.verdict, "missing": self.missing,
                "reason": self.reason}


def _hill_from_logs(desc_logs: np.ndarray, k: int) -> float:
    """Hill index 1 / mean_{i<=k} (l_(i) - l_(k+1)) from log-values sorted in decreasing order."""
    h = float(np.mean(desc_logs[:k] - desc_logs[k]))
    return 1.0 / h if h > 1e-12 else float("inf")


def _rescale(value: float, log_scale: float) -> float:
    """value * exp(log_scale) for value >= 0 without 0 * inf (inf when it overflows)."""
    if not value > 0:
        return 0.0 if value == 0 or value < 0 else float("nan")
    if not np.isfinite(value):
        return float("inf")
    log_value = np.log(value) + log_scale
    return float(np.exp(log_value)) if log_value < 709.0 else float("inf")


def support_mass(log_ratios: np.ndarray, level: float = SUPPORT_LEVEL,
                 tolerance: float = SUPPORT_TOLERANCE) -> SupportMass:
    """Does the target put mass where the base policy never goes? (statistics.md 7c, "Support").

    Parameters
    ----------
    log_ratios : array of lr_i = lp_t,i - lp_b,i over the logged rows valid for the policy
        (finite; exact or noisy teacher-forced log-probs).
    level : one-sided confidence of each bound; fixed by default (:data:`SUPPORT_LEVEL` = 0.99),
        independent of the interval level of the estimates.
    tolerance : missing mass is claimed only when ``upper < 1 - tolerance``
        (:data:`SUPPORT_TOLERANCE` = 0.10).

    Returns
    -------
    SupportMass
        m, its one-sided lower and upper bounds, the tail indices used and the verdict.

    Notes
    -----
    **The statistic.** With ratios w_i = exp(lr_i) of responses drawn from the base pi0,

        m = (1/n) sum_i w_i,    E[m] = sum_{a: pi0(a|x) > 0} pi'(a|x) = 1 - q,

    where q is the target's probability of responses the base never writes. With exact
    log-probs and a target the base covers, E[m] = 1; a target with missing mass q has
    E[m] = 1 - q, which the Hajek normalisation (:func:`cje.stats.weights.hajek_weights`)
    divides away. Computed stably as exp(max lr) * mean exp(lr - max lr).

    **Lower bound.** m - z s / sqrt(n) (z = Phi^{-1}(level), s the sample sd of w), at
    least 0. For right-skewed ratios the sample mean and sd move together, so a normal
    lower bound errs, if anything, low (measured: above E[m] in 0-1.4% of samples, 1,000
    samples per case, light and heavy tails).

    **Upper bound: heavy tails.** The naive m + z s / sqrt(n) is not a bound when the
    tail is heavy (Hill index < 2, infinite variance): the mean then rests on rare huge
    ratios that a finite sample usually misses, so m is usually *below* E[m] (median
    0.955 for Pareto ratios with index 1.5 at n = 1,000) and s is too small with it;
    a normal upper bound falsely shows missing mass. The upper bound therefore models
    the tail, as Pareto-smoothed importance sampling does (Vehtari et al., 2015/2024,
    with its tail size k = ceil(min(0.2 n, 3 sqrt(n)))): above u = w_(k+1), the
    (k+1)-th largest ratio, the ratios are taken to be Pareto with index alpha, whose
    Hill estimate (Hill, 1975) alpha_hat = 1 / mean_{i<=k} log(w_(i) / u) satisfies
    k alpha / alpha_hat ~ Gamma(k, 1) exactly for a Pareto tail, so

        alpha_lo = G_k^{-1}(1 - level) alpha_hat / k      (G_k: the Gamma(k, 1) cdf)

    is a one-sided lower bound. With the Pareto mean excess over u, u / (alpha - 1), and
    P(w > u) ~ Beta(k + 1, n - k) (u is the (k+1)-th largest of n), bounded by its
    ``level`` quantile p_up,

        upper = mean(min(w, u)) + z sd(min(w, u)) / sqrt(n) + p_up u / (alpha_lo - 1):

    the bounded part with a normal bound plus the tail at its heaviest plausible index
    and mass; never below the naive bound (a single outlier the Hill estimate discounts),
    and inf
    when alpha_lo <= 1 or the Hill index of :func:`hill_tail_index`'s convention is <= 1
    (an infinite mean cannot be bounded: no claim). A tail lighter than Pareto (the
    log-normal ratios of a Gaussian shift) makes this conservative. Measured over 1,000
    samples each: the upper bound lies below E[m] in at most 0.6% of samples for Pareto
    ratios of index 1.1-2 and log-normal ratios of log-sd 0.25-2, with and without
    log-prob noise, at n = 300 and 1,000, where the naive bound claims missing mass
    falsely in up to 65% (tests/stats/test_support_mass.py).

    **Noisy log-probs.** If each reported log-prob carries independent noise,
    lr_obs = lr + e_t - e_b with e_t, e_b independent of the response, mean zero, sds
    sigma_t and sigma_b, then E[exp(lr_obs)] = (1 - q) E[exp(e_t)] E[exp(-e_b)], which is
    (1 - q) exp((sigma_t^2 + sigma_b^2) / 2) for Gaussian noise and >= 1 - q for any
    mean-zero noise (Jensen). Noise only inflates m (by 9.4% at sigma = 0.3 on both, the
    ``strong`` scenario), and makes the tail heavier: it cannot create a false claim of
    missing mass, but it can hide up to q = 1 - (1 - tolerance) exp(-(sigma_t^2 + sigma_b^2) / 2)
    (0.18 at sigma = 0.3) and can turn a FAIL into a PASS. A *systematic* offset b in
    lr (a template or tokenisation mismatch) scales m by exp(b); the tolerance absorbs
    offsets down to log(0.9) = -0.105 nats per response.

    **Decision.** FAIL (clear missing mass) when upper < 1 - tolerance; PASS (positive
    evidence that at most ``tolerance`` of the mass is missing, up to noise) when
    lower >= 1 - tolerance; else UNTESTED. On a covered target a false FAIL needs the
    upper bound to miss by more than ``tolerance``, so it is rarer than 1 - level = 1%
    per policy (measured 0-0.3% on the heavy-tailed cases above, 0 of 400 on every
    covered target of the simulator's scenarios). The tolerance of 0.10 keeps the claim
    away from the regimes where the bound rests on its tail model and from small
    log-prob offsets, and still
    detects the failures that matter: a judge-blind defect in 40% of a target's
    responses that the base never writes has m = 0.6 and is claimed in every replicate
    at n = 300 (measured m = 0.50-0.60 for such targets, 0.995-1.009 for healthy ones).

    References
    ----------
    Hill, B. M. (1975). A simple general approach to inference about the tail of a
    distribution. Ann. Statist. 3(5), 1163-1174.
    Vehtari, A., Simpson, D., Gelman, A., Yao, Y., Gabry, J. (2015/2024). Pareto smoothed
    importance sampling. arXiv:1507.02646; JMLR 25(72).
    Owen, A. B. (2013). Monte Carlo theory, methods and examples, ch. 9 (importance
    sampling: E_pi0[pi'/pi0] = 1 exactly when pi0 covers pi').
    """
    lr = np.asarray(log_ratios, float).ravel()
    if not np.all(np.isfinite(lr)):
        raise ValueError(f"support_mass: {int((~np.isfinite(lr)).sum())} non-finite log-ratios "
                         "(drop invalid log-probs first)")
    if not 0.5 < level < 1.0:
        raise ValueError(f"support_mass: level must be in (0.5, 1), got {level}")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"support_mass: tolerance must be in [0, 1), got {tolerance}")
    n, nan = lr.size, float("nan")
    if n < 2:
        return SupportMass(n, float(np.exp(lr[0])) if n else nan, nan, nan, nan, nan, level, tolerance,
                           "UNTESTED", f"{n} logged row(s): too few to bound the mean ratio")
    z = float(special.ndtri(level))
    top = float(lr.max())
    w = np.exp(lr - top)  # in (0, 1]; exp(top) is restored at the end
    mean, sd = float(w.mean()), float(w.std(ddof=1))
    lower_s = max(mean - z * sd / np.sqrt(n), 0.0)
    upper_s = mean + z * sd / np.sqrt(n)
    desc = np.sort(lr)[::-1]
    k_hill = max(10, int(0.05 * n))
    hill = _hill_from_logs(desc, k_hill) if n > k_hill + 1 else nan
    k = int(np.ceil(min(0.2 * n, 3.0 * np.sqrt(n))))
    alpha_lo = nan
    if not hill > 1.0:  # Hill <= 1 (infinite mean) or too few rows for a tail model: no upper bound
        upper_s = float("inf")
    else:
        h = float(np.mean(desc[:k] - desc[k]))
        alpha_lo = float(special.gammaincinv(k, 1.0 - level) / (k * h)) if h > 1e-12 else float("inf")
        u = float(np.exp(desc[k] - top))
        body = np.minimum(w, u)
        # P(w > u) ~ Beta(k + 1, n - k) for u the (k+1)-th largest of n: its upper bound, not k / n
        p_tail = float(special.betaincinv(k + 1, n - k, level))
        tail = 0.0 if np.isinf(alpha_lo) else p_tail * u / (alpha_lo - 1.0) if alpha_lo > 1.0 else float("inf")
        upper_s = max(upper_s, float(body.mean() + z * body.std(ddof=1) / np.sqrt(n) + tail))
    m, lower, upper = _rescale(mean, top), _rescale(lower_s, top), _rescale(upper_s, top)
    bounds = f"m = {m:.3f}, one-sided {level:.0%} bounds [{lower:.3f}, {upper:.3f}]"
    if upper < 1.0 - tolerance:
        verdict = "FAIL"
        reason = (f"{bounds}: at least {1 - upper:.0%} of the target's mass is on responses the base "
                  "policy never writes; the weights cannot see it")
    elif lower >= 1.0 - tolerance:
        verdict = "PASS"
        reason = f"{bounds}: at most {tolerance:.0%} of the target's mass is missing from the base's support"
    else:
        verdict = "UNTESTED"
        if np.isnan(hill):
            why = f"{n} rows are too few for a model of the ratios' tail"
        elif np.isinf(upper):
            why = f"the ratios' tail is too heavy to bound their mean (Hill index {hill:.2f})"
        else:
            why = "the bounds straddle the tolerance"
        reason = f"{bounds}: {why}"
    return SupportMass(n, m, lower, upper, hill, alpha_lo, level, tolerance, verdict, reason)


def overlap_is_evidenced(weights: np.ndarray, log_ratios: np.ndarray) -> bool:
    """Positive evidence that importance weights cover the target (the overlap PASS of the ladder).

    Parameters
    ----------
    weights : ndarray
        The raw (Hajek) importance weights of the policy's logged rows.
    log_ratios : ndarray
        lp_target - lp_base over the same rows (finite values are used).

    Returns
    -------
    bool
        True when the support check PASSes (:func:`support_mass`), the ESS fraction is
        >= :data:`ESS_GOOD` and the Hill tail index is >= :data:`HILL_WARN` (or there is no tail).
    """
    w = np.asarray(weights, float)
    lr = np.asarray(log_ratios, float)
    lr = lr[np.isfinite(lr)]
    if w.size < 2 or lr.size < 2:
        return False
    hill = hill_tail_index(w)
    return (support_mass(lr).verdict == "PASS" and ess_fraction(w) >= ESS_GOOD
            and not (np.isfinite(hill) and hill < HILL_WARN))
