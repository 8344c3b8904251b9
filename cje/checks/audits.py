"""Transport audits and disagreement checks: the evidence the status ladder weighs.

* Transport audits (does the base-policy calibration f hold for the target?):
  (a) probe labels on the target's fresh draws, delta = mean(Y - f(S')) with a t
  interval (:func:`probe_audit`); (b) without probes, the labelled logged rows weighted
  by the full importance weight, delta = sum_L W (Y - f^(oof)(S)) / sum_L W (the tr-cpo
  label term, :func:`label_audit`), since E_base[W (Y - f(S))] = E_target[Y] - E_target[f(S)];
  informative only when the weights are. Verdict: :func:`audit_verdict`.
* Disagreement checks between estimates of the same value that rest on different
  assumptions (:func:`disagreement`): raw IPS vs direct (weights vs fresh draws),
  calibrated vs raw IPS (the monotone weight projection), direct vs tr-cpo
  (transport). Paired difference with the influence functions and the OUA of the
  difference.

How the verdicts become a status: :mod:`cje.checks.status`. The checks of one
policy, which run reference estimators, are assembled in :mod:`cje.analysis.references`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from cje.stats.inference import oua_variance, weighted_label_residual, welch_satterthwaite

__all__ = ["Audit", "probe_audit", "label_audit", "audit_verdict", "disagreement", "transport_audit"]


@dataclass(frozen=True)
class Audit:
    """A transport audit: delta with its SE and t interval; ``source`` 'probes' or 'weighted_labels'."""

    source: str
    delta: float
    se: float
    ci_lower: float
    ci_upper: float
    n: int
    margin: float
    se_labels: float | None = None  # the label-noise part of ``se`` (without the calibration's error)
    oracle_variance: float | None = None  # the calibration's part (probe audit), None when not added

    def to_dict(self, verdict: str | None = None) -> dict:
        out = {"source": self.source, "delta": self.delta, "se": self.se, "ci_lower": self.ci_lower,
               "ci_upper": self.ci_upper, "n": self.n, "margin": self.margin,
               "se_labels": self.se if self.se_labels is None else self.se_labels,
               "oracle_variance": self.oracle_variance}
        if verdict is not None:
            out["status"] = verdict
        return out


def _t_quantile(df: float, level: float) -> float:
    return float(special.stdtrit(df, 0.5 + level / 2)) if np.isfinite(df) else float(special.ndtri(0.5 + level / 2))


def probe_audit(labels: np.ndarray, calibrated: np.ndarray, margin: float, level: float,
                calibrated_by_fold: np.ndarray | None = None) -> Audit | None:
    """Audit (a): mean residual of the probe labels, delta = mean(Y - f(S')), with a t interval.

    The probes are not in the calibration's training labels, so f's own estimation error is
    a second, independent part of delta's variance: with ``calibrated_by_fold`` (K x n_probe,
    f^(-k)(S')) it is added as the OUA jackknife of delta, and the df are Welch-Satterthwaite
    of n - 1 and K - 1 (without it an honest target failed the audit whenever the calibration
    itself was off). Returns None with fewer than 2 probe labels.
    """
    y = np.asarray(labels, float)
    r = y - np.asarray(calibrated, float)
    if r.size < 2:
        return None
    delta, var_probe = float(r.mean()), float(r.var(ddof=1) / r.size)
    parts = [(var_probe, r.size - 1)]
    if calibrated_by_fold is not None:
        var_oracle = oua_variance((y[None, :] - np.asarray(calibrated_by_fold, float)).mean(axis=1))
        if var_oracle:
            parts.append((var_oracle, calibrated_by_fold.shape[0] - 1))
    se = float(np.sqrt(sum(v for v, _ in parts)))
    q = _t_quantile(welch_satterthwaite(parts), level)
    return Audit("probes", delta, se, delta - q * se, delta + q * se, int(r.size), margin,
                 se_labels=float(np.sqrt(var_probe)), oracle_variance=parts[1][0] if len(parts) > 1 else None)


def label_audit(weights: np.ndarray, labelled: np.ndarray, labels: np.ndarray, f_oof: np.ndarray,
                margin: float, level: float) -> Audit | None:
    """Audit (b): delta = sum_L W (Y - f^(oof)(S)) / sum_L W over the labelled logged rows.

    Inputs over the policy's rows: full importance weights W (Hajek), the labelled mask,
    labels Y and out-of-fold calibrated scores. SE from the influence function of the
    ratio (:func:`weighted_label_residual`); t interval with n_L - 1 df.
    Returns None with fewer than 2 labelled rows or no weight on them.
    """
    found = weighted_label_residual(weights, labelled, labels, f_oof)
    if found is None:
        return None
    delta, phi = found
    n_l = int(np.asarray(labelled, bool).sum())
    se = float(np.sqrt(np.var(phi, ddof=1) / phi.size))
    q = _t_quantile(n_l - 1, level)
    return Audit("weighted_labels", delta, se, delta - q * se, delta + q * se, n_l, margin)


def audit_verdict(audit: Audit | None, se_estimate: float | None) -> str:
    """FAIL / PASS / UNTESTED for one estimate (statistics.md 7, revised).

    m = min(margin, SE of the estimate judged). PASS: the CI lies inside (-m, m) -- a bias
    the audit cannot rule out must be small against the interval it would invalidate.
    FAIL: the CI excludes 0 and |delta| > m -- a detected bias larger than that interval's
    SE makes it wrong. (The first specification failed only beyond the margin; measured in
    the gaming scenario, a detected bias of -0.013 against an SE of 0.0075 then left a CI
    that missed the truth marked reliable.) Anything else (too few labels to tell) is UNTESTED.
    """
    if audit is None:
        return "UNTESTED"
    m = audit.margin if se_estimate is None or not np.isfinite(se_estimate) else min(audit.margin, se_estimate)
    if (audit.ci_lower > 0 or audit.ci_upper < 0) and abs(audit.delta) > m:
        return "FAIL"
    if -m < audit.ci_lower and audit.ci_upper < m:
        return "PASS"
    return "UNTESTED"


def disagreement(name: str, comparison: dict, margin: float, assumptions: tuple[str, ...]) -> dict:
    """Verdict of a paired comparison of two estimates of the same value.

    ``comparison`` is :func:`cje.stats.inference.paired_comparison`'s output. AGREE when the
    difference's CI contains 0; DISAGREE (WARNING) when it excludes 0 but |d| <= margin;
    FAIL (CRITICAL) when it excludes 0 and |d| > margin. ``assumptions``: the assumption
    ids that distinguish the two estimates (those a disagreement casts doubt on).
    """
    d, lo, hi = comparison["difference"], comparison["ci_lower"], comparison["ci_upper"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        verdict = "UNTESTED"
    elif lo <= 0 <= hi:
        verdict = "AGREE"
    else:
        verdict = "FAIL" if abs(d) > margin else "DISAGREE"
    return {"check": name, "status": verdict, "difference": d, "se": comparison["se"], "ci_lower": lo,
            "ci_upper": hi, "p_value": comparison["p_value"], "margin": margin, "assumptions": list(assumptions)}


def transport_audit(oracle_labels: np.ndarray, calibrated: np.ndarray, margin: float = 0.05,
                    level: float = 0.95, se_estimate: float | None = None) -> dict:
    """Does the base-policy calibration transport to this target? (probe labels, audit (a)).

    delta = mean(Y - f(S')) over the target's probe-labelled fresh draws, with a t
    interval; the verdict is :func:`audit_verdict` (FAIL: CI excludes 0 and
    |delta| > margin; PASS: CI inside +-min(margin, ``se_estimate``); else UNTESTED).
    """
    audit = probe_audit(oracle_labels, calibrated, margin, level)
    if audit is None:
        return {"status": "NOT_RUN", "n_probe": int(np.size(oracle_labels)), "reason": "fewer than 2 probe labels"}
    return {**audit.to_dict(audit_verdict(audit, se_estimate)), "n_probe": audit.n}
