"""What each estimate rests on, and which of it was checked (statistics.md 7, revised).

Three kinds of evidence feed one ledger per policy:

* Transport audits (does the base-policy calibration f hold for the target?):
  (a) probe labels on the target's fresh draws, delta = mean(Y - f(S')) with a t
  interval; (b) without probes, the labelled logged rows weighted by the full
  importance weight, delta = sum_L W (Y - f^(oof)(S)) / sum_L W (the tr-cpo label
  term), since E_base[W (Y - f(S))] = E_target[Y] - E_target[f(S)]; informative only
  when the weights are (a PASS from it counts only when 'overlap' passes). Verdict (an
  equivalence test, :func:`audit_verdict`), m = min(margin, SE of the estimate judged):
  PASS only when the CI lies inside (-m, m); FAIL when the CI excludes 0 and |delta| > m;
  otherwise UNTESTED.
* Disagreement checks between estimates of the same value that rest on different
  assumptions (:func:`disagreement`): raw IPS vs direct (weights vs fresh draws),
  calibrated vs raw IPS (the monotone weight projection), direct vs tr-cpo
  (transport). Paired difference with the influence functions and the OUA of the
  difference; AGREE when its CI contains 0, DISAGREE (a WARNING) when it does not
  but |d| <= margin, FAIL (CRITICAL) when it does not and |d| > margin.
* Weight diagnostics (ESS, Hill tail index) for estimates that average with weights.
* For ``naive``, the same audits with f replaced by the identity (is the raw judge
  score the oracle metric? delta = mean(Y - S') on probes, or the weighted labels).

:func:`assumption_ledger` turns them into one entry per assumption an estimate rests
on: PASS (checked and holds), FAIL, UNTESTED (not checkable with these data; the
status is then at most WARNING, with the fix), or DESIGN (holds by how the pipeline
produced the data and cannot be checked from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["ASSUMPTIONS", "FIXES", "Audit", "probe_audit", "label_audit", "audit_verdict", "disagreement",
           "assumption_ledger", "policy_checks"]

ASSUMPTIONS = {
    "fresh_draws": "fresh draws are a sample from the target policy",
    "transport": "calibration transport (surrogacy): E[Y | S] under the target equals the base-policy "
                 "calibration f(S)",
    "overlap": "the importance weights are right and cover the target: the log-probs are the sampling "
               "densities and the logged responses cover the target's (ESS, tail index, IPS-vs-direct balance)",
    "monotone_weights": "E[W | S] is monotone in the judge score (SIMCal-W projects the weights on it)",
    "transport_or_overlap": "either the calibration transports or the importance weights are right "
                            "(tr-cpo's label term removes the transport bias when the weights are right)",
    "random_labels": "the oracle (and probe) labels used are a uniform random subset, so the labelling "
                     "probability is known",
    "judge_is_metric": "the raw judge score is the quality metric (no calibration to the oracle)",
}
FIXES = {
    "transport": "label a share of each target's fresh draws (--probe-coverage, config analysis.probe_coverage) "
                 "or use tr-cpo",
    "overlap": "add fresh draws to cross-check the weights, or use an estimator that does not rest on them "
               "(direct with --probe-coverage)",
    "monotone_weights": "compare with raw-ips",
    "transport_or_overlap": "label a share of each target's fresh draws (--probe-coverage)",
    "judge_is_metric": "use a calibrated estimator (direct, dr-cpo, ...)",
}


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
    from cje.inference import oua_variance, welch_satterthwaite

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

    ``comparison`` is :func:`cje.inference.paired_comparison`'s output. AGREE when the
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


def _overlap_status(raw: dict | None, balance: dict | None) -> tuple[str, str]:
    """overlap: FAIL on ESS < 0.10, Hill < 1 or an IPS-vs-direct FAIL; PASS on ESS >= 0.30,
    Hill >= 2 (or no tail) and no disagreement; otherwise UNTESTED (weak but not broken)."""
    from cje.diagnostics import ESS_GOOD, ESS_WARN, HILL_CRIT, HILL_WARN

    if raw is None:
        return "UNTESTED", "no usable raw weights"
    ess, hill = raw["ess"], raw["hill_index"]
    parts = [f"raw-weight ESS {ess:.1%}", f"Hill index {hill:.2f}" if np.isfinite(hill) else "no weight tail"]
    if balance is not None:
        parts.append(f"IPS vs direct {balance['status']}")
    evidence = ", ".join(parts)
    if ess < ESS_WARN or (np.isfinite(hill) and hill < HILL_CRIT) or (balance and balance["status"] == "FAIL"):
        return "FAIL", evidence
    if ess >= ESS_GOOD and not (np.isfinite(hill) and hill < HILL_WARN) and \
            (balance is None or balance["status"] == "AGREE"):
        return "PASS", evidence
    return "UNTESTED", evidence


def _audit_entry(audit: dict | None, what: str, raw_weights: dict | None, balance: dict | None) -> tuple[str, str]:
    """Status and evidence of an assumption judged by an audit (transport, or judge = metric)."""
    if audit is None:
        return "UNTESTED", "no labels to audit it"
    status = audit["status"]
    evidence = (f"{audit['source']} audit of {what}: mean residual {audit['delta']:+.4f} "
                f"[{audit['ci_lower']:+.4f}, {audit['ci_upper']:+.4f}] on {audit['n']} labels; PASS needs the "
                f"interval inside +-min(margin {audit['margin']:g}, SE)")
    if audit["source"] == "weighted_labels" and status == "PASS":
        o_status, o_evidence = _overlap_status(raw_weights, balance)
        if o_status != "PASS":  # the weighted labels only speak for the target where W is right
            status = "UNTESTED"
            evidence += f"; not conclusive: the weights are not checked ({o_evidence})"
    return status, evidence


def assumption_ledger(rests_on: list[str], notes: dict[str, str], *, transport: dict | None,
                      raw_weights: dict | None, checks: list[dict], judge_audit: dict | None = None) -> list[dict]:
    """One entry {id, statement, status, evidence} per assumption the estimate rests on.

    transport : the audit used for this estimate (``Audit.to_dict(verdict)``) or None;
    judge_audit : the same audit of Y - S (is the raw judge score the metric?), for ``naive``;
    raw_weights : raw-weight diagnostics; checks : disagreement verdicts (:func:`disagreement`).
    A disagreement that FAILs marks every assumption it names FAIL (unless already FAIL);
    one that DISAGREEs marks a PASS as UNTESTED.
    """
    by_check = {c["check"]: c for c in checks}
    balance = by_check.get("ips_vs_direct")
    entries = {}
    for aid in rests_on:
        statement = ASSUMPTIONS[aid] + (f". {notes[aid]}" if aid in notes else "")
        if aid == "transport":
            status, evidence = _audit_entry(transport, "Y - f(S)", raw_weights, balance)
        elif aid == "overlap":
            status, evidence = _overlap_status(raw_weights, balance)
        elif aid == "transport_or_overlap":
            o_status, o_evidence = _overlap_status(raw_weights, balance)
            t_status = transport["status"] if transport is not None else "UNTESTED"
            status = "PASS" if "PASS" in (o_status, t_status) else (
                "FAIL" if o_status == "FAIL" and t_status == "FAIL" else "UNTESTED")
            evidence = f"weights: {o_status} ({o_evidence}); transport audit: {t_status}"
        elif aid in ("fresh_draws", "random_labels"):
            status, evidence = "DESIGN", "holds by how the data were produced; not checkable from them"
        elif aid == "judge_is_metric":
            status, evidence = _audit_entry(judge_audit, "Y - S", raw_weights, balance)
        else:  # monotone_weights: the calibrated-vs-raw IPS check speaks to it (below)
            status, evidence = "PASS", ""
        entries[aid] = {"id": aid, "statement": statement, "status": status, "evidence": evidence}
    for c in checks:
        for aid in c["assumptions"]:
            if aid not in entries:
                continue
            e = entries[aid]
            text = (f"{c['check']}: difference {c['difference']:+.4f} [{c['ci_lower']:+.4f}, {c['ci_upper']:+.4f}] "
                    f"{c['status']}")
            if c["status"] == "FAIL":
                e["status"] = "FAIL"
            elif c["status"] == "DISAGREE" and e["status"] in ("PASS", "DESIGN"):
                e["status"] = "UNTESTED"
            elif c["status"] == "AGREE" and aid == "monotone_weights":
                e["status"] = "PASS"
            e["evidence"] = "; ".join(x for x in (e["evidence"], text) if x)
    if "monotone_weights" in entries and "calibrated_vs_raw_ips" not in by_check:
        entries["monotone_weights"].update(status="UNTESTED", evidence="not compared with raw IPS")
    return list(entries.values())


# --- the checks of one policy, computed once per analysis context ------------------------------------

def _calibrated_logged(ctx):
    """f(S) and f^(-k)(S) on the logged rows at every coverage (R is Y at 100%)."""
    if ctx.oua:
        return ctx.R, ctx.f_fold
    if "f_logged" not in ctx._cache:
        ctx._cache["f_logged"] = ctx.calibration.predict(ctx.data.judge_scores, ctx.covariates)
    return ctx._cache["f_logged"], ctx.f_fold


def _ips_on_calibrated(ctx, policy):
    """mean(W_raw f(S)) over the policy's rows: IPS on the calibrated score (weights vs fresh draws)."""
    rows = ctx.rows(policy)
    w = ctx.raw_weights(policy)
    f, f_fold = _calibrated_logged(ctx)
    psi = float(np.mean(w * f[rows]))
    return psi, ctx.data.prompt_ids[rows], w * (f[rows] - psi), (f_fold[:, rows] * w).mean(axis=1)


def _direct_on_calibrated(ctx, policy):
    """mean over prompts of mean f(S') over the fresh draws (no probe correction)."""
    view = ctx.fresh[policy]
    rows = np.flatnonzero(view.has_fresh)
    g = view.row_mean(view.R)[rows]
    psi = float(g.mean())
    jack = np.array([view.row_mean(view.R_fold[k])[rows].mean() for k in range(ctx.n_folds)])
    return psi, ctx.data.prompt_ids[rows], g - psi, jack


def _label_term(ctx, policy, raw_weights):
    """tr-cpo's label term over the policy's rows: (delta, IF, jackknife over f^(-k) or None)."""
    rows = ctx.rows(policy)
    labelled = ctx.labelled[rows] & np.isfinite(ctx.data.oracle_labels[rows])
    labels = np.nan_to_num(ctx.data.oracle_labels[rows])
    found = weighted_label_residual(raw_weights, labelled, labels, ctx.f_oof[rows])
    if found is None:
        return None
    jack = np.array([weighted_label_residual(raw_weights, labelled, labels, ctx.f_fold[k, rows])[0]
                     for k in range(ctx.n_folds)])
    return found[0], found[1], jack


def policy_checks(ctx, policy: str) -> dict:
    """Audits and disagreement checks of one policy (cached on the context).

    Returns {"label_audit": Audit | None, "probe_audit": Audit | None, "checks": [...],
    "notes": [...]}. Failures to compute a reference estimate (no fresh draws for some
    prompts, unusable weights) skip that check with a note; they never stop the analysis.
    """
    key = ("policy-checks", policy)
    if key in ctx._cache:
        return ctx._cache[key]
    from cje.estimators.ips import CalibratedIPSEstimator, RawIPSEstimator
    from cje.inference import interval, paired_comparison
    from cje.weights import WeightError

    o = ctx.options
    margin, level = o.transport_margin, o.level
    out = {"label_audit": None, "probe_audit": None, "judge_audit": None, "checks": [], "notes": []}

    def compare(a, b):
        return paired_comparison(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], level=level)

    rows = ctx.rows(policy)
    try:
        w = ctx.raw_weights(policy)
    except WeightError as exc:
        out["notes"].append(f"weights unusable, weight-based checks skipped: {exc}")
        w = None
    if w is not None:
        labelled = ctx.labelled[rows] & np.isfinite(ctx.data.oracle_labels[rows])
        labels = np.nan_to_num(ctx.data.oracle_labels[rows])
        out["label_audit"] = label_audit(w, labelled, labels, ctx.f_oof[rows], margin, level)
        # is the raw judge score the metric? the same audit with f replaced by the identity
        out["judge_audit"] = label_audit(w, labelled, labels, ctx.data.judge_scores[rows], margin, level)
        try:
            cal, raw = CalibratedIPSEstimator().estimate(ctx, policy), RawIPSEstimator().estimate(ctx, policy)
            if cal.details["simcal_choice"] != "raw":
                out["checks"].append(disagreement("calibrated_vs_raw_ips", compare(
                    (cal.estimate, cal.cluster_ids, cal.influence, cal.jackknife),
                    (raw.estimate, raw.cluster_ids, raw.influence, raw.jackknife)), margin, ("monotone_weights",)))
        except WeightError as exc:
            out["notes"].append(f"calibrated vs raw IPS skipped: {exc}")
    view = ctx.fresh.get(policy)
    if view is not None:
        if view.probe.any():
            out["probe_audit"] = probe_audit(view.oracle[view.probe], view.R[view.probe], margin, level,
                                             view.R_fold[:, view.probe])
            out["judge_audit"] = probe_audit(view.oracle[view.probe], view.judge[view.probe], margin, level)
        if w is not None and view.has_fresh.any():
            direct = _direct_on_calibrated(ctx, policy)
            out["checks"].append(disagreement("ips_vs_direct", compare(_ips_on_calibrated(ctx, policy), direct),
                                              margin, ("overlap", "fresh_draws")))
            label_term = _label_term(ctx, policy, w)
            if label_term is not None:
                # tr-cpo = dr-cpo + its label term, and dr-cpo is the direct method when R = f(S)
                # (R - g = 0): the difference is the label term, with its IF and jackknife
                delta, phi, jack = label_term
                res = interval(-delta, -phi, None if jack is None else -jack, level=level)
                t = res.estimate / res.se if res.se > 0 else float("inf")
                p = float(2 * special.stdtr(res.df, -abs(t))) if np.isfinite(t) else 0.0
                out["checks"].append(disagreement("direct_vs_tr_cpo", {
                    "difference": res.estimate, "se": res.se, "ci_lower": res.ci_lower, "ci_upper": res.ci_upper,
                    "p_value": p}, margin, ("transport",)))
    ctx._cache[key] = out
    return out
