"""One analysis end to end: load -> context -> estimator -> inference -> diagnostics -> result.

``run_analysis(AnalysisConfig)`` is what ``cje analyze`` and the Snakemake
analysis rule call. It validates every option before reading data, so a bad
option fails fast with a one-line message.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from cje import __version__
from cje.analysis.options import check_against_data, check_options
from cje.analysis.references import judge_checks, policy_checks, probe_mean_comparison
from cje.checks.audits import Audit, audit_verdict, disagreement, pool_audits
from cje.checks.status import FIXES, assumption_ledger, overlap_evidence, policy_status
from cje.data.loaders import FreshDraws, LoggedData, load_fresh_draws_dir, load_logged_data
from cje.errors import OptionError
from cje.estimators import get_estimator
from cje.estimators.base import Estimator, PolicyEstimate
from cje.estimators.context import AnalysisContext, AnalysisOptions, ByIdentity, build_context
from cje.results.decision import BASE, decision_pairs
from cje.results.model import AnalysisOutput, PlotData, PolicyResult
from cje.stats.calibration import MIN_ORACLE_LABELS
from cje.stats.diagnostics import bhattacharyya_overlap, out_of_range_mass, weight_diagnostics
from cje.stats.inference import VALUE_BOUNDS, interval, paired_comparisons
from cje.stats.weights import WeightError

__all__ = ["AnalysisConfig", "run_analysis", "analyze_loaded", "analyze_context", "validate_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisConfig:
    """Inputs of one analysis (the ``cje analyze`` flags)."""

    data: str
    estimator: str
    fresh_draws_dir: str | None = None
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    refuse_unreliable: bool = False


def validate_config(config: AnalysisConfig, data: LoggedData | None = None) -> Estimator:
    """Check every option before any estimator runs; return the estimator instance.

    Without ``data``: types, ranges and finiteness (:func:`cje.analysis.options.check_options`).
    With ``data`` also the data-dependent limits (``n_folds <= oracle labels / 2``,
    :func:`cje.analysis.options.check_against_data`). Raises a one-line
    :class:`~cje.errors.OptionError` naming the flag and option key.
    """
    estimator = get_estimator(config.estimator)
    check_options(config.options)
    if estimator.needs_fresh_draws and not config.fresh_draws_dir:
        raise OptionError(f"estimator '{estimator.name}' needs fresh draws: pass --fresh-draws-dir DIR "
                          "holding {policy}_responses.jsonl", flag="--fresh-draws-dir", key="fresh_draws_dir")
    if data is not None:
        check_against_data(config.options, data)
    return estimator


def _overlap_diagnostics(ctx: AnalysisContext, policy: str, rows: np.ndarray | None,
                         weights: np.ndarray | None) -> dict:
    """Judge-score overlap of the target's fresh draws with the logged rows (cached on the context:
    the unweighted part per policy, the weighted part per weights array, which the estimators of
    one weight source share)."""
    view = ctx.fresh.get(policy)
    if view is None:
        return {}

    def unweighted() -> dict:
        logged = ctx.data.judge_scores[np.isfinite(ctx.data.judge_scores)]
        return {"judge_overlap": bhattacharyya_overlap(view.judge, logged),
                "out_of_range_mass": out_of_range_mass(view.judge, ctx.calibration.score_range),
                "fresh_draws_mean_judge": float(view.judge.mean()) if view.judge.size else None}

    out = dict(ctx.memo(("overlap", policy), unweighted))
    if rows is not None and weights is not None:
        out["judge_overlap_weighted"] = ctx.memo(
            ("overlap-weighted", policy, ByIdentity(rows), ByIdentity(weights)),
            lambda: bhattacharyya_overlap(view.judge, ctx.data.judge_scores[rows], weights))
    return out


FIXES_TRANSPORT = FIXES["transport"]


def _judged_audit(audits: list[Audit | None], overlap_status: str, se: float | None, level: float) -> dict | None:
    """The transport evidence one estimate is judged by: the probe audit and the weighted-label
    audit pooled by inverse variance (:func:`cje.checks.audits.pool_audits`). The weighted labels
    speak only for the part of the target the weights cover, so they are pooled only when
    overlap PASSes; alone (no probes) their FAIL still counts, their PASS does not."""
    probe, label = audits
    if probe is not None:
        audit = pool_audits([probe, label if overlap_status == "PASS" else None], level)
    else:
        audit = label
    if audit is None:
        return None
    verdict = audit_verdict(audit, se)
    block = audit.to_dict(verdict)
    block["n_probe" if audit.source == "probes" else "n_labels"] = audit.n
    if audit.source == "weighted_labels" and verdict.status == "PASS" and overlap_status != "PASS":
        block["status"] = "UNTESTED"
        block["note"] = "equivalent to 0, but the weights are not shown to cover the target, so not conclusive"
    return block


def _probe_only_correction_caveat(transport: dict | None, est: PolicyEstimate | None,
                                  rests_on: list[str]) -> str | None:
    """Why a probe-corrected estimate of a target whose calibration FAILed transport is not GOOD.

    The judge is then shown wrong for the target, and the estimate is the probe labels' alone
    (the weighted labels are pooled only when overlap is evidenced). Such intervals covered
    0.92-0.94 per Monte-Carlo cell with 100 probes (200 replicates each; docs/statistics.md),
    so GOOD would be given to a miss at or above the nominal 5%: the status says what
    happened instead, with the size of the failure.
    """
    if (transport is None or transport["status"] != "FAIL" or est is None or "transport" in rests_on
            or not est.details.get("n_probe_labels") or est.details.get("label_pool_weight", 0.0) > 0):
        return None
    return (f"the judge's calibration does not hold for this target (probe audit: mean residual "
            f"{transport['delta']:+.3f} on {transport['n']} labels): the estimate corrects it with its "
            f"{est.details['n_probe_labels']} probe labels alone, so it is only as good as those labels; GOOD "
            "needs a judge that holds for the target, or weights that pass overlap (their labels are then pooled)")


def _probes_needed(ctx: AnalysisContext, checks: dict, se: float | None) -> int | None:
    """Probe labels that make GOOD reachable for an estimate resting on transport: with them the
    estimate carries the probe correction (no longer resting on transport); m such that the
    correction adds at most half to its SE, sqrt(SE^2 + s^2 / m) <= 1.5 SE, i.e. m >= s^2 / (1.25 SE^2),
    with s the residual sd of the calibration (out of fold)."""
    if se is None or not np.isfinite(se) or se <= 0:
        return None
    s = ctx.calibration.oof_rmse
    return int(np.ceil(s ** 2 / (1.25 * se ** 2))) if np.isfinite(s) and s > 0 else None


def _ground_truth(ctx: AnalysisContext, policy: str, result: PolicyResult) -> dict | None:
    view = ctx.fresh.get(policy)
    if view is None or not view.truth_mask.any():
        return None
    labels = view.oracle[view.truth_mask]
    truth = float(labels.mean())
    se = float(labels.std(ddof=1) / np.sqrt(labels.size)) if labels.size > 1 else None
    error = None if result.estimate is None else result.estimate - truth
    in_ci = None if result.ci_lower is None else bool(result.ci_lower <= truth <= result.ci_upper)
    return {"truth": truth, "truth_se": se, "n_labels": int(labels.size), "error": error, "in_ci": in_ci}


def _base_policy(ctx: AnalysisContext) -> tuple[dict, PolicyEstimate]:
    """The base policy's on-policy estimate (the same for every estimator: cached on the context)."""
    block, est = ctx.memo("base-policy", lambda: _base_policy_estimate(ctx))
    return dict(block), est


def _base_policy_estimate(ctx: AnalysisContext) -> tuple[dict, PolicyEstimate]:
    scored = np.flatnonzero(np.isfinite(ctx.data.judge_scores))
    r = ctx.R[scored]
    psi = float(r.mean())
    jack = ctx.R_fold[:, scored].mean(axis=1) if ctx.oua else None
    est = PolicyEstimate(estimate=psi, influence=r - psi, cluster_ids=ctx.data.prompt_ids[scored],
                         jackknife=jack, n_used=int(scored.size))
    res = interval(psi, est.influence, jack, level=ctx.options.level, bounds=VALUE_BOUNDS)
    mask = ctx.mask.held_out & np.isfinite(ctx.data.judge_scores)
    block = {"estimate": psi, "se": res.se, "ci_lower": res.ci_lower, "ci_upper": res.ci_upper,
             "n_used": int(scored.size), "mean_judge_score": float(ctx.data.judge_scores[scored].mean()),
             "held_out_oracle_mean": float(ctx.data.oracle_labels[mask].mean()) if mask.any() else None,
             "method": "on-policy mean of calibrated rewards over the logged rows"}
    return block, est


def _policy_result(ctx: AnalysisContext, estimator: Estimator, policy: str,
                   refuse_unreliable: bool) -> tuple[PolicyResult, dict, PolicyEstimate | None, dict]:
    data = ctx.data
    dropped = dict(data.dropped[policy])
    rows = ctx.rows(policy)
    raw_diag, used_diag, raw_w, failure, est = None, None, None, None, None
    try:
        if rows.size:
            raw_w = ctx.raw_weights(policy)
            raw_diag = dict(ctx.memo(("raw-weight-diagnostics", policy), lambda: weight_diagnostics(raw_w)))
    except WeightError as exc:
        failure = f"raw importance weights unusable: {exc}"
    try:
        est = estimator.estimate(ctx, policy)
    except WeightError as exc:
        failure = f"importance weights unusable: {exc}"
    if est is not None:
        dropped.update(est.dropped)
        if est.weights is not None:
            used_diag = weight_diagnostics(est.weights)
    drop_rows = sum(data.dropped[policy].values())
    drop_fraction = drop_rows / data.n if data.n else 0.0
    weighted_rows = None
    if est is not None and est.weights is not None:
        weighted_rows = rows if est.weight_rows is None else est.weight_rows
    ci = None
    if est is not None and np.isfinite(est.estimate):
        # a policy value is in [0, 1]: its CI is clipped there (estimate and SE unchanged)
        ci = interval(est.estimate, est.influence, est.jackknife, level=ctx.options.level, parts=est.df_parts,
                      bounds=VALUE_BOUNDS)
    checks = policy_checks(ctx, policy)
    se = None if ci is None else ci.se
    margin, level = ctx.options.transport_margin, ctx.options.level
    judged = judge_checks(checks["comparisons"], margin, se)
    if est is not None and ci is not None:
        vs_probes = probe_mean_comparison(ctx, policy, est)
        if vs_probes is not None:
            judged.append(disagreement("estimate_vs_probe_mean", vs_probes, margin,
                                       tuple(a for a in est.rests_on if a not in ("fresh_draws", "random_labels")),
                                       se))
    support = None if checks["support"] is None else checks["support"].to_dict()
    if support is not None and support["verdict"] == "FAIL":
        # With mass the base never writes, IPS on f(S) averages the covered part only: a difference
        # from the fresh draws' mean f(S') then shows that the uncovered part scores differently,
        # where no oracle label ever checked the calibration -- evidence against transport too.
        judged = [{**c, "assumptions": [*c["assumptions"], "transport", "transport_or_overlap"]}
                  if c["check"] == "ips_vs_direct" else c for c in judged]
    overlap = overlap_evidence(raw_diag, support, judged)
    transport = _judged_audit([checks["probe_audit"], checks["label_audit"]], overlap[0], se, level)
    judge = checks["judge_audit"]  # the audit of Y - S: on the probes when there are any, else the weighted labels
    by_source = [judge, None] if judge is not None and judge.source == "probes" else [None, judge]
    judge_audit = _judged_audit(by_source, overlap[0], se, level)
    label, probe = checks["label_audit"], checks["probe_audit"]
    diag = {"weights_raw": raw_diag, "weights_used": used_diag, "support": support,
            **_overlap_diagnostics(ctx, policy, weighted_rows, est.weights if est is not None else None),
            "transport": transport,
            "probe_audit": None if probe is None else {**probe.to_dict(audit_verdict(probe, se)), "n_probe": probe.n},
            "label_audit": None if label is None else label.to_dict(audit_verdict(label, se))}
    if checks["notes"]:
        diag["check_notes"] = list(checks["notes"])
    rests_on = [] if est is None else est.rests_on
    ledger = assumption_ledger(rests_on, {} if est is None else est.notes, transport=transport, overlap=overlap,
                               checks=judged, judge_audit=judge_audit,
                               simcal_choice=None if est is None else est.details.get("simcal_choice"))
    fixes = {}
    needed = _probes_needed(ctx, checks, se)
    if needed is not None:
        fixes["transport"] = (f"about {needed} probe labels on the target's fresh draws (--probe-coverage): the "
                              "estimate then carries the probe correction and no longer rests on transport "
                              "(its SE grows by at most half)")
    if overlap[0] == "PASS":
        fixes["transport"] = fixes.get("transport", FIXES_TRANSPORT) + (
            "; or tr-cpo, which corrects with the weighted labels and whose weights pass here")
    effective = None if est is None else est.details.get("label_effective_n")
    if failure is None and effective is not None and effective < MIN_ORACLE_LABELS:
        failure = (f"the label term rests on {effective:.1f} effective labels (< {MIN_ORACLE_LABELS}, Kish ESS of "
                   "the importance weights of the labelled rows): its variance cannot be estimated")
    caveat = _probe_only_correction_caveat(transport, est, rests_on)
    status = policy_status(assumptions=ledger, overlap=diag.get("judge_overlap"), drop_fraction=drop_fraction,
                           failure=failure, checks=judged, fixes=fixes, caveat=caveat)
    reasons = list(status.reasons)
    if transport is not None and transport["status"] == "FAIL" and "transport" not in rests_on and caveat is None:
        reasons.append(f"transport audit FAIL ({transport['source']}: mean residual {transport['delta']:+.3f} on "
                       f"{transport['n']} labels): the base-policy calibration does not hold for this target; "
                       "this estimate does not rest on it (it corrects with labels)")
    if ci is None:
        values = dict(estimate=None, se=None, ci_lower=None, ci_upper=None, se_without_oua=None,
                      oracle_variance=None, df=None)
        n_used = 0
    else:
        values = dict(estimate=ci.estimate, se=ci.se, ci_lower=ci.ci_lower, ci_upper=ci.ci_upper,
                      se_without_oua=ci.se_without_oua, oracle_variance=ci.oracle_variance, df=ci.df)
        n_used = est.n_used
    if refuse_unreliable and not status.reliable and values["estimate"] is not None:
        values.update(estimate=None, se=None, ci_lower=None, ci_upper=None)
        reasons.append("estimate withheld (--refuse-unreliable)")
    ess_source = used_diag or raw_diag
    result = PolicyResult(**values, ess=None if ess_source is None else ess_source["ess"],
                          max_weight=None if ess_source is None else ess_source["max_weight"],
                          status=status.status, reliable=status.reliable, reasons=reasons, n_used=n_used,
                          n_dropped_by_reason=dropped, assumptions=ledger, checks=judged,
                          details={} if est is None else dict(est.details))
    arrays = {"raw": raw_w, "used": None if est is None else est.weights}
    return result, diag, est, arrays


def _plot_data(ctx: AnalysisContext, arrays: dict) -> PlotData:
    lo, hi = 0.0, 1.0
    grid = np.linspace(lo, hi, 201)
    cov = np.zeros((grid.size, 1)) if ctx.calibration.uses_covariates else None
    oracle_used = np.where(ctx.labelled, ctx.data.oracle_labels, np.nan)
    return PlotData(
        judge_scores=ctx.data.judge_scores, oracle_labels=oracle_used, calibrated=ctx.R,
        calibrated_oof=ctx.R_oof, calibration_grid=grid, calibration_curve=ctx.calibration.predict(grid, cov),
        raw_weights={p: a["raw"] for p, a in arrays.items() if a["raw"] is not None},
        used_weights={p: a["used"] for p, a in arrays.items() if a["used"] is not None},
        fresh_judge_scores={p: v.judge for p, v in ctx.fresh.items()},
        fresh_truth_labels={p: np.where(v.truth_mask, v.oracle, np.nan) for p, v in ctx.fresh.items()})


def run_analysis(config: AnalysisConfig) -> AnalysisOutput:
    """Run one analysis from files. Raises CJEError subclasses on bad options or input."""
    validate_config(config)
    lengths = config.options.calibration_mode != "monotone"  # only two-stage reads response lengths
    data = load_logged_data(config.data, response_lengths=lengths)
    fresh = (load_fresh_draws_dir(config.fresh_draws_dir, data.target_policies, response_lengths=lengths)
             if config.fresh_draws_dir else {})
    result = analyze_loaded(data, fresh, config.estimator, config.options, config.refuse_unreliable)
    missing = [p for p in data.target_policies if p not in fresh] if config.fresh_draws_dir else []
    if missing:  # reported, never silently ignored (estimators that need them have refused above)
        result.metadata["fresh_draws_missing"] = missing
        result.metadata["warnings"].append(
            f"no fresh draws file for {len(missing)} policies ({', '.join(missing)}) in "
            f"{config.fresh_draws_dir}: no ground truth or transport audit for them")
    result.metadata["inputs"] = {"data": str(Path(config.data)), "fresh_draws_dir": config.fresh_draws_dir}
    return result


def _comparisons(base_block: dict | None, base_est: PolicyEstimate | None, policies: dict[str, PolicyResult],
                 estimates: dict[str, PolicyEstimate], targets: list[str], o: AnalysisOptions) -> list[dict]:
    """The paired comparisons of ``metadata.comparisons`` (``o.comparisons``, module
    :mod:`cje.results.decision`): every target with an estimate against the base, the pairs
    the decision reads (:func:`cje.results.decision.decision_pairs`) and any named pairs; or
    every pair with ``'all'``. Each is psi_a - psi_b with the base always second; all are
    computed in one vectorised pass (:func:`cje.stats.inference.paired_comparisons`)."""
    # a withheld estimate (--refuse-unreliable) is not compared either: its difference from the
    # base would give it away
    named = {p: estimates[p] for p in targets if p in estimates and policies[p].estimate is not None}
    if base_est is not None:
        named = {BASE: base_est, **named}
    if o.comparisons == "all":
        pairs = list(combinations(named, 2))
    else:
        finite = {p: r.estimate if r.estimate is not None and np.isfinite(r.estimate) else None
                  for p, r in policies.items()}  # as the payload writes them (NaN -> null)
        view = {"metadata": {"target_policies": targets, "base_policy": base_block,
                             "policies": {p: {"estimate": finite[p], "status": r.status, "reliable": r.reliable}
                                          for p, r in policies.items()}}}
        extra = [] if o.comparisons == "base" else [tuple(c) for c in o.comparisons]
        pairs = [(p, BASE) for p in named if p != BASE] + decision_pairs(view) + extra
    seen, order = set(), []
    for a, b in pairs:
        if a == BASE:
            a, b = b, a
        key = frozenset((a, b))
        if a != b and a in named and b in named and key not in seen:
            seen.add(key)
            order.append((a, b))
    names = list(named)
    row = {n: i for i, n in enumerate(names)}
    ests = [named[n] for n in names]
    results = paired_comparisons([e.estimate for e in ests], [e.cluster_ids for e in ests],
                                 [e.influence for e in ests], [e.jackknife for e in ests],
                                 [(row[a], row[b]) for a, b in order], level=o.level)
    return [{"policy_a": a, "policy_b": b, **r} for (a, b), r in zip(order, results)]


def analyze_loaded(data: LoggedData, fresh: dict[str, FreshDraws], estimator_name: str,
                   options: AnalysisOptions | None = None, refuse_unreliable: bool = False) -> AnalysisOutput:
    """Run one analysis on in-memory data (used by ``run_analysis``, simulations and benchmarks).

    Inputs: validated logged data, fresh draws per policy (may be empty), the
    estimator name and options. Output: an :class:`AnalysisOutput`.
    """
    o = options or AnalysisOptions()
    estimator = validate_config(AnalysisConfig(data="<memory>", estimator=estimator_name,
                                               fresh_draws_dir="<memory>" if fresh else None, options=o),
                                data=data)
    return analyze_context(build_context(data, fresh, o), estimator, refuse_unreliable)


def analyze_context(ctx: AnalysisContext, estimator: Estimator, refuse_unreliable: bool = False) -> AnalysisOutput:
    """Run one estimator on a built context (several estimators can share one context).

    Inputs: a context from :func:`cje.estimators.context.build_context` and an estimator instance.
    Output: an :class:`AnalysisOutput`.
    """
    data, fresh, o = ctx.data, ctx.fresh, ctx.options
    if estimator.needs_fresh_draws:
        missing = [p for p in data.target_policies if p not in fresh]
        if missing:
            raise OptionError(f"estimator '{estimator.name}' needs fresh draws; none found for "
                              f"{missing} (expected {{policy}}_responses.jsonl in the fresh-draws folder)",
                              flag="--fresh-draws-dir", key="fresh_draws_dir")
    policies, diagnostics, truths, estimates, arrays = {}, {}, {}, {}, {}
    for policy in data.target_policies:
        result, diag, est, arr = _policy_result(ctx, estimator, policy, refuse_unreliable)
        policies[policy], diagnostics[policy], arrays[policy] = result, diag, arr
        if est is not None:
            estimates[policy] = est
        truth = _ground_truth(ctx, policy, result)
        if truth is not None:
            truths[policy] = truth
    base_block, base_est = _base_policy(ctx)
    comparisons = _comparisons(base_block, base_est, policies, estimates, data.target_policies, o)
    warnings = list(ctx.calibration.warnings)
    if ctx.mask.warning:
        warnings.append(ctx.mask.warning)
    fresh_counts = {p: {"n_draws": int(v.row.size), "n_ignored_draws": v.n_ignored_draws,
                        "n_ignored_prompts": v.n_ignored_prompts, "n_probe_labels": int(v.probe.sum()),
                        "n_truth_labels": int(v.truth_mask.sum())} for p, v in ctx.fresh.items()}
    metadata = {
        "n_samples": data.n, "oracle_coverage": o.oracle_coverage,
        "oracle_coverage_used": ctx.mask.used_coverage, "seed": o.seed, "n_oracle": ctx.calibration.n_oracle,
        "n_folds": o.n_folds, "probe_coverage": o.probe_coverage,
        "calibration": ctx.calibration.summary(), "diagnostics": diagnostics,
        "base_policy": base_block, "comparisons_mode": "all" if o.comparisons == "all" else "base",
        "comparisons": comparisons, "fresh_draws": fresh_counts,
        "inference": {"level": o.level, "interval": "student-t", "df": "Welch-Satterthwaite of n-1, K-1 and the label/probe parts",
                      "oua": ("jackknife over folds (sum formula) for every estimate a fitted calibrator enters"
                              if ctx.oua else "100% oracle coverage: the logged rewards are the oracle labels; the "
                              "jackknife over folds still applies where the calibrator enters (fresh-draw "
                              "predictions of direct, probe and label residuals)"),
                      "cluster": "prompt_id",
                      "bounds": "CIs clipped to [0, 1] for values and [-1, 1] for differences (estimates and SEs "
                                "unchanged); p = 1 for a zero difference with zero SE"},
        "warnings": warnings,
        "inputs": {"data": data.path, "fresh_draws_dir": None},
        "cje_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if truths:
        metadata["ground_truth"] = truths
    return AnalysisOutput(estimator=estimator.name, target_policies=data.target_policies, policies=policies,
                          metadata=metadata, plot_data=_plot_data(ctx, arrays))
