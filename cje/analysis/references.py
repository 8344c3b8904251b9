"""The per-policy evidence that needs the analysis context: audits, reference estimates, support.

Reference estimates (raw and calibrated IPS, direct, tr-cpo's label term, the probe-label
mean) run on the analysis context, so they live in the analysis layer. Their paired
differences are computed once per policy (:func:`policy_checks`) and judged per estimate
(:func:`judge_checks`), because the tolerance of every check is min(margin, SE of the
estimate judged). The audits and the decision rule are :mod:`cje.checks.audits`, the
ladder that weighs them :mod:`cje.checks.status`.
"""

from __future__ import annotations

import numpy as np

from cje.checks.audits import disagreement, label_audit, probe_audit
from cje.estimators.base import PolicyEstimate
from cje.estimators.context import AnalysisContext
from cje.estimators.ips import CalibratedIPSEstimator, RawIPSEstimator
from cje.stats.diagnostics import support_mass
from cje.stats.inference import interval, paired_comparison, weighted_label_residual
from cje.stats.weights import WeightError

__all__ = ["policy_checks", "judge_checks", "probe_mean_comparison"]


def _calibrated_logged(ctx):
    """f(S) and f^(-k)(S) on the logged rows at every coverage (R is Y at 100%)."""
    if ctx.oua:
        return ctx.R, ctx.f_fold
    return ctx.memo("f_logged", lambda: ctx.calibration.predict(ctx.data.judge_scores, ctx.covariates)), ctx.f_fold


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


def policy_checks(ctx: AnalysisContext, policy: str) -> dict:
    """Audits, support and the reference comparisons of one policy (cached on the context).

    Parameters
    ----------
    ctx : the analysis context.
    policy : a target policy.

    Returns
    -------
    dict
        ``label_audit``, ``probe_audit``, ``judge_audit`` (:class:`~cje.checks.audits.Audit`
        or None), ``support`` (:class:`~cje.stats.diagnostics.SupportMass` or None),
        ``comparisons`` (list of (check id, paired comparison, assumption ids), judged per
        estimate by :func:`judge_checks`) and ``notes``. Failures to compute a reference
        estimate (no fresh draws for some prompts, unusable weights) skip that comparison
        with a note; they never stop the analysis.
    """
    return ctx.memo(("policy-checks", policy), lambda: _policy_checks(ctx, policy))


def _policy_checks(ctx: AnalysisContext, policy: str) -> dict:
    o = ctx.options
    margin, level = o.transport_margin, o.level
    out = {"label_audit": None, "probe_audit": None, "judge_audit": None, "support": None, "comparisons": [],
           "notes": []}

    def compare(a, b):
        return paired_comparison(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], level=level)

    rows = ctx.rows(policy)
    if rows.size >= 2:
        lr = ctx.data.target_logprobs[policy][rows] - ctx.data.base_logprobs[rows]
        out["support"] = support_mass(lr[np.isfinite(lr)])
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
            cal = CalibratedIPSEstimator().estimate_uncorrected(ctx, policy)
            raw = RawIPSEstimator().estimate_uncorrected(ctx, policy)
            if cal.details["simcal_choice"] != "raw":
                out["comparisons"].append(("calibrated_vs_raw_ips", compare(
                    (cal.estimate, cal.cluster_ids, cal.influence, cal.jackknife),
                    (raw.estimate, raw.cluster_ids, raw.influence, raw.jackknife)), ("monotone_weights",)))
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
            out["comparisons"].append(("ips_vs_direct", compare(_ips_on_calibrated(ctx, policy), direct),
                                       ("overlap",)))
            label_term = _label_term(ctx, policy, w)
            if label_term is not None:
                # tr-cpo = dr-cpo + its label term, and dr-cpo is the direct method when R = f(S)
                # (R - g = 0): the difference is the label term, with its IF and jackknife
                delta, phi, jack = label_term
                res = interval(-delta, -phi, None if jack is None else -jack, level=level)
                out["comparisons"].append(("direct_vs_tr_cpo", {
                    "difference": res.estimate, "se": res.se, "ci_lower": res.ci_lower, "ci_upper": res.ci_upper,
                    "df": res.df}, ("transport",)))
    return out


def _logged_rows_of(ctx: AnalysisContext, ids: np.ndarray) -> np.ndarray:
    """Logged row index of each prompt id (ids are unique in the logged data): a sorted index
    built once per context, then a vectorised binary search."""
    def index() -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(ctx.data.prompt_ids, kind="stable")
        return ctx.data.prompt_ids[order], order

    sorted_ids, order = ctx.memo("row-of-prompt-id", index)
    return order[np.searchsorted(sorted_ids, ids)]


def probe_mean_comparison(ctx: AnalysisContext, policy: str, est: PolicyEstimate) -> dict | None:
    """The estimate minus the probe-label mean of its target, with a paired SE.

    The probes are a uniform random subset of the target's labelled fresh draws, so their
    mean Ybar_P is an unbiased estimate of V(target) that rests on nothing else; every
    estimate, whatever it rests on, is compared with it (statistics.md 7c). Both sides are
    put on the estimate's clusters (its logged prompts, n_e of them): the probes of those
    prompts (m of them) give Ybar_P and the per-prompt influence
    phi_c = (n_e / m) sum_{j in P, prompt c} (Y_j - Ybar_P); the difference's SE pairs it with
    the estimate's influence prompt by prompt and keeps the estimate's OUA
    (:func:`cje.stats.inference.paired_comparison`).

    Parameters
    ----------
    ctx : the analysis context.
    policy : the target policy.
    est : the estimate judged.

    Returns
    -------
    dict or None
        The paired comparison, or None without at least 2 probe labels on the estimate's prompts.
    """
    view = ctx.fresh.get(policy)
    if view is None or int(view.probe.sum()) < 2 or not np.isfinite(est.estimate):
        return None
    rows = _logged_rows_of(ctx, est.cluster_ids)
    position = np.full(ctx.data.n, -1)
    position[rows] = np.arange(rows.size)
    probe = view.probe & (view.row >= 0)
    cluster = position[view.row[probe]]
    y = view.oracle[probe][cluster >= 0]
    cluster = cluster[cluster >= 0]
    m = int(y.size)
    if m < 2:
        return None
    ybar = float(y.mean())
    phi = np.bincount(cluster, weights=y - ybar, minlength=rows.size) * (rows.size / m)
    return paired_comparison(est.estimate, est.cluster_ids, est.influence, est.jackknife,
                             ybar, est.cluster_ids, phi, None, level=ctx.options.level)


def judge_checks(comparisons: list[tuple[str, dict, tuple]], margin: float, se_estimate: float | None) -> list[dict]:
    """Judge each reference comparison for one estimate (:func:`cje.checks.audits.disagreement`)."""
    return [disagreement(name, comp, margin, assumptions, se_estimate) for name, comp, assumptions in comparisons]
