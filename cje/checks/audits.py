"""Transport audits and disagreement checks, and the one decision rule they all use.

* Transport audits (does the base-policy calibration f hold for the target?):
  (a) probe labels on the target's fresh draws, delta = mean(Y - f(S')) with a t
  interval (:func:`probe_audit`); (b) without probes, the labelled logged rows weighted
  by the full importance weight, delta = sum_L W (Y - f^(oof)(S)) / sum_L W (the tr-cpo
  label term, :func:`label_audit`), since E_base[W (Y - f(S))] = E_target[Y] - E_target[f(S)];
  informative only when the weights are (and cover the target). The two are pooled by
  inverse variance when both are usable (:func:`pool_audits`), never one preferred.
* Disagreement checks between estimates of the same value that rest on different
  assumptions (:func:`disagreement`): raw IPS vs direct (weights vs fresh draws),
  calibrated vs raw IPS (the monotone weight projection), direct vs tr-cpo
  (transport), and every estimate vs the probe-label mean of its target.

Every check is judged by :func:`decide`, at a check level fixed here (not ``--level``):

* FAIL when the difference is significant at two-sided ``CHECK_ALPHA`` = 0.002 (a t
  quantile of about 3.1) AND material, |d| > min(margin, SE of the estimate judged): a
  detected bias larger than that SE invalidates the estimate's interval. The level assumes
  at most ``CHECKS_PER_ESTIMATE`` = 5 checks can fail one estimate (the probe or pooled
  transport audit, three disagreements, the probe-mean check): by Bonferroni a false FAIL,
  hence a false CRITICAL, has probability <= 5 x 0.002 = 1% per estimate on healthy data.
* PASS only on positive evidence: a two one-sided tests (TOST) equivalence at one-sided
  ``PASS_ALPHA`` = 0.05, |d| + t_0.95 SE <= the same tolerance min(margin, SE of the
  estimate). A difference that merely is not significant is UNTESTED, never PASS.
* Power is part of the verdict: the smallest bias the check detects with 80% power,
  (t_fail + z_0.80) SE, and whether a PASS was reachable at all (t_0.95 SE < tolerance).

How the verdicts become a status: :mod:`cje.checks.status`. The checks of one policy,
which run reference estimators, are assembled in :mod:`cje.analysis.references`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from cje.stats.inference import oua_variance, weighted_label_residual, welch_satterthwaite

__all__ = ["Audit", "probe_audit", "label_audit", "pool_audits", "audit_verdict", "disagreement",
           "transport_audit", "decide", "Verdict", "tolerance_for", "CHECK_ALPHA", "PASS_ALPHA", "CHECKS_PER_ESTIMATE",
           "POWER"]

CHECK_ALPHA = 0.002  # two-sided significance of a FAIL, per check (fixed: independent of --level)
CHECKS_PER_ESTIMATE = 5  # the multiplicity CHECK_ALPHA assumes: 5 x 0.002 = 1% false CRITICAL per estimate
PASS_ALPHA = 0.05  # one-sided level of each of the two tests of an equivalence (TOST) PASS
POWER = 0.80  # the power at which a check reports the bias it can detect


def _t_quantile(df: float, level: float) -> float:
    """Two-sided t quantile for a confidence ``level`` (normal when df is infinite)."""
    return float(special.stdtrit(df, 0.5 + level / 2)) if np.isfinite(df) else float(special.ndtri(0.5 + level / 2))


def _t_upper(df: float, prob: float) -> float:
    """The ``prob`` quantile of Student t with ``df`` degrees of freedom (normal when df is infinite)."""
    return float(special.stdtrit(df, prob)) if np.isfinite(df) else float(special.ndtri(prob))


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`decide`: status, the thresholds it used, and its power."""

    status: str
    statistic: float
    p_value: float
    tolerance: float
    detectable_bias: float
    pass_reachable: bool

    def to_dict(self) -> dict:
        return {"status": self.status, "statistic": self.statistic, "p_value": self.p_value,
                "tolerance": self.tolerance, "detectable_bias": self.detectable_bias,
                "pass_reachable": self.pass_reachable, "check_alpha": CHECK_ALPHA, "pass_alpha": PASS_ALPHA}


def decide(difference: float, se: float, df: float, tolerance: float) -> Verdict:
    """The one decision rule of every check (audits and disagreements).

    Parameters
    ----------
    difference : d, the estimated bias or difference (0 when the assumption holds).
    se : its standard error (sampling and, where a calibrator enters, oracle parts).
    df : degrees of freedom of its t reference distribution (``inf`` for normal).
    tolerance : tau = min(margin, SE of the estimate judged): the largest bias that leaves
        the estimate's interval honest enough (a bias of one SE drops a 95% interval's
        coverage to 0.83; of half an SE, to 0.92).

    Returns
    -------
    Verdict
        ``FAIL`` when |d| / se >= t_{1 - CHECK_ALPHA/2, df} and |d| > tau; ``PASS`` when
        |d| + t_{1 - PASS_ALPHA, df} se <= tau (TOST equivalence); else ``UNTESTED``.
        ``detectable_bias`` = (t_{1 - CHECK_ALPHA/2} + z_POWER) se; ``pass_reachable`` =
        t_{1 - PASS_ALPHA} se < tau. A zero difference with zero SE has p = 1.

    References
    ----------
    Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power
    approach for assessing the equivalence of average bioavailability. J. Pharmacokinet.
    Biopharm. 15(6), 657-680.
    """
    d, se = float(difference), float(se)
    q_fail = _t_upper(df, 1 - CHECK_ALPHA / 2)
    q_pass = _t_upper(df, 1 - PASS_ALPHA)
    if not (np.isfinite(d) and np.isfinite(se)):
        return Verdict("UNTESTED", float("nan"), float("nan"), tolerance, float("nan"), False)
    if se > 0:
        stat = abs(d) / se
        p = float(2 * special.stdtr(df, -stat)) if np.isfinite(df) else float(2 * special.ndtr(-stat))
    else:
        stat, p = (float("inf"), 0.0) if d != 0 else (0.0, 1.0)
    detectable = (q_fail + float(special.ndtri(POWER))) * se
    if stat >= q_fail and abs(d) > tolerance:
        status = "FAIL"
    elif abs(d) + q_pass * se <= tolerance:
        status = "PASS"
    else:
        status = "UNTESTED"
    return Verdict(status, stat, p, float(tolerance), float(detectable), bool(q_pass * se < tolerance))


def tolerance_for(margin: float, se_estimate: float | None) -> float:
    """tau = min(margin, SE of the estimate judged); the margin alone when that SE is unknown."""
    if se_estimate is None or not np.isfinite(se_estimate) or se_estimate <= 0:
        return float(margin)
    return float(min(margin, se_estimate))


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
    df: float = float("inf")  # of the t reference distribution
    parts: tuple = ()  # the audits pooled into this one (:func:`pool_audits`)

    def to_dict(self, verdict: "Verdict | str | None" = None) -> dict:
        out = {"source": self.source, "delta": self.delta, "se": self.se, "ci_lower": self.ci_lower,
               "ci_upper": self.ci_upper, "n": self.n, "margin": self.margin, "df": self.df,
               "se_labels": self.se if self.se_labels is None else self.se_labels,
               "oracle_variance": self.oracle_variance}
        if self.parts:
            out["pooled_from"] = [{"source": a.source, "delta": a.delta, "se": a.se, "n": a.n} for a in self.parts]
        if isinstance(verdict, Verdict):
            out.update(verdict.to_dict())
        elif verdict is not None:
            out["status"] = verdict
        return out


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
    df = welch_satterthwaite(parts)
    q = _t_quantile(df, level)
    return Audit("probes", delta, se, delta - q * se, delta + q * se, int(r.size), margin,
                 se_labels=float(np.sqrt(var_probe)), oracle_variance=parts[1][0] if len(parts) > 1 else None,
                 df=float(df))


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
    return Audit("weighted_labels", delta, se, delta - q * se, delta + q * se, n_l, margin, df=float(n_l - 1))


def pool_audits(audits: list[Audit | None], level: float) -> Audit | None:
    """Pool the usable transport audits by inverse variance (statistics.md 7c: probe and
    weighted-label evidence pooled, never one preferred).

    delta = sum_a delta_a / se_a^2 / sum_a 1 / se_a^2, se = (sum_a 1 / se_a^2)^(-1/2); the two
    audits use different units (the target's fresh draws, the base's labelled rows), so they
    are treated as independent; df by Welch-Satterthwaite. One usable audit is returned as is.
    Adding labels can only shrink se, so it lowers no status in expectation.
    """
    usable = [a for a in audits if a is not None and np.isfinite(a.se) and a.se > 0]
    if len(usable) < 2:
        return usable[0] if usable else None
    prec = np.array([1 / a.se ** 2 for a in usable])
    delta = float(sum(p * a.delta for p, a in zip(prec, usable)) / prec.sum())
    se = float(np.sqrt(1 / prec.sum()))
    df = welch_satterthwaite([((p / prec.sum()) ** 2 * a.se ** 2, a.df) for p, a in zip(prec, usable)])
    q = _t_quantile(df, level)
    return Audit("pooled", delta, se, delta - q * se, delta + q * se, sum(a.n for a in usable), usable[0].margin,
                 df=float(df), parts=tuple(usable))


def audit_verdict(audit: Audit | None, se_estimate: float | None) -> Verdict | None:
    """The verdict of a transport audit for one estimate: :func:`decide` with tolerance
    min(margin, SE of the estimate judged); None without an audit.

    (The first specification failed only beyond the margin; measured in the gaming scenario,
    a detected bias of -0.013 against an SE of 0.0075 then left a CI that missed the truth
    marked reliable. A PASS needs the bias to be shown small against the interval it would
    invalidate; too few labels to tell is UNTESTED.)
    """
    if audit is None:
        return None
    return decide(audit.delta, audit.se, audit.df, tolerance_for(audit.margin, se_estimate))


def disagreement(name: str, comparison: dict, margin: float, assumptions: tuple[str, ...],
                 se_estimate: float | None = None) -> dict:
    """Verdict of a paired comparison of two estimates of the same value (:func:`decide`).

    Parameters
    ----------
    name : the check's id (``ips_vs_direct``, ``calibrated_vs_raw_ips``, ``direct_vs_tr_cpo``,
        ``estimate_vs_probe_mean``).
    comparison : :func:`cje.stats.inference.paired_comparison`'s output (difference, se, df, CI, p).
    margin : the transport margin (``--transport-margin``).
    assumptions : the assumption ids that distinguish the two estimates (those a FAIL casts
        doubt on).
    se_estimate : SE of the estimate judged (the tolerance is min(margin, it)).

    Returns
    -------
    dict
        ``check``, ``status`` (FAIL / PASS / UNTESTED), the difference with its SE, CI and
        p-value, the tolerance, ``detectable_bias`` and ``pass_reachable``, ``assumptions``.
    """
    d, se = comparison["difference"], comparison["se"]
    verdict = decide(d, se, comparison.get("df", float("inf")), tolerance_for(margin, se_estimate))
    return {"check": name, **verdict.to_dict(), "difference": d, "se": se,
            "ci_lower": comparison["ci_lower"], "ci_upper": comparison["ci_upper"], "p_value": verdict.p_value,
            "margin": margin, "assumptions": list(assumptions)}


def transport_audit(oracle_labels: np.ndarray, calibrated: np.ndarray, margin: float = 0.05,
                    level: float = 0.95, se_estimate: float | None = None) -> dict:
    """Does the base-policy calibration transport to this target? (probe labels, audit (a)).

    delta = mean(Y - f(S')) over the target's probe-labelled fresh draws, with a t
    interval; the verdict is :func:`audit_verdict` (:func:`decide` with tolerance
    min(margin, ``se_estimate``)).
    """
    audit = probe_audit(oracle_labels, calibrated, margin, level)
    if audit is None:
        return {"status": "NOT_RUN", "n_probe": int(np.size(oracle_labels)), "reason": "fewer than 2 probe labels"}
    return {**audit.to_dict(audit_verdict(audit, se_estimate)), "n_probe": audit.n}
