"""How GOOD is decided: the assumption ledger and the one status ladder (statistics.md 7, 7c).

Every surface (JSON, CSV, dashboard, terminal) reads the status decided here.
Each estimate rests on assumptions (:data:`ASSUMPTIONS`); :func:`assumption_ledger`
records for each whether it was checked: PASS (positive evidence that it holds), FAIL
(evidence that it does not), UNTESTED (not shown either way with these data; the status
is then at most WARNING, with the fix and what it would take), or DESIGN (holds by how
the pipeline produced the data and cannot be checked from it). GOOD is a claim that
every assumption was checked: it needs every entry PASS or DESIGN and no failed check.

=================================  ============================  ==========================
assumption / rule                  PASS (positive evidence)      FAIL (CRITICAL)
=================================  ============================  ==========================
overlap (weights right, covering)  support m: lower bound >= 0.9 support m: upper bound < 0.9
                                   and raw ESS >= 0.30 and       (missing mass), or raw ESS
                                   Hill >= 2 (or no tail)        < 0.10, or Hill < 1, or
                                                                 IPS vs direct FAIL
transport (calibration holds)      pooled audit equivalent to 0  pooled audit FAIL; with
                                   within min(margin, SE)        missing support, IPS vs
                                                                 direct FAIL
transport_or_overlap (tr-cpo)      either PASS                   both FAIL
monotone_weights (SIMCal-W)        the out-of-fold selection     calibrated vs raw IPS FAIL
judge_is_metric (naive)            audit of Y - S equivalent     anything else (a reference)
every estimate                     --                            vs the probe-label mean FAIL
judge-score overlap (BC), for      >= 0.85                       < 0.50 (< 0.85: WARNING);
  estimates resting on transport                                 corrected ones: < 0.50 WARNING
rows dropped for the policy        <= 10% (> 10%: WARNING)       > 50%
a transport FAIL corrected with    --                            (WARNING: the estimate is
  probe labels alone                                             the probe labels' alone)
=================================  ============================  ==========================

Every check is judged by one rule (:func:`cje.checks.audits.decide`) at a fixed check
level: FAIL needs significance at two-sided 0.002 and a bias larger than min(margin, SE of
the estimate); PASS needs a TOST equivalence within that tolerance. A check that merely
does not reject raises nothing. The support statistic is
:func:`cje.stats.diagnostics.support_mass`: the mean of the unnormalised ratios
exp(lp_target - lp_base) is 1 - q when the target puts mass q where the base never goes,
which no weight diagnostic of the (normalised) weights can see; the weighted-label audit
speaks for the covered part only, so it is pooled into the transport evidence only when
overlap PASSes. ``naive`` rests on "the judge is the metric": unless an audit shows it, it
is CRITICAL, a reference only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cje.stats.diagnostics import ESS_GOOD, ESS_WARN, HILL_CRIT, HILL_WARN

__all__ = ["STATUS_ORDER", "OVERLAP_GOOD", "OVERLAP_CRIT",
           "ASSUMPTIONS", "FIXES", "assumption_ledger", "overlap_evidence", "Status", "policy_status"]

STATUS_ORDER = {"GOOD": 0, "WARNING": 1, "CRITICAL": 2}

OVERLAP_GOOD, OVERLAP_CRIT = 0.85, 0.50


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


def overlap_evidence(raw: dict | None, support: dict | None, checks: list[dict]) -> tuple[str, str]:
    """Status and evidence of 'overlap' (the importance weights are right and cover the target).

    Parameters
    ----------
    raw : raw-weight diagnostics (:func:`cje.stats.diagnostics.weight_diagnostics`) or None.
    support : :meth:`cje.stats.diagnostics.SupportMass.to_dict` of the policy's log-ratios, or None.
    checks : the judged checks of the estimate; an ``ips_vs_direct`` FAIL fails overlap.

    Returns
    -------
    (status, evidence)
        FAIL on clear missing mass, raw ESS < 0.10, Hill < 1 or an IPS-vs-direct FAIL; PASS
        only on positive evidence: support PASS, ESS >= 0.30 and Hill >= 2 (or no tail);
        otherwise UNTESTED.
    """
    if raw is None:
        return "UNTESTED", "no usable raw weights"
    ess, hill = raw["ess"], raw["hill_index"]
    parts = [f"raw-weight ESS {ess:.1%}", f"Hill index {hill:.2f}" if np.isfinite(hill) else "no weight tail"]
    if support is not None:
        parts.append(f"support: mean unnormalised ratio {support['m']:.3f} [{support['lower']:.3f}, "
                     f"{support['upper']:.3f}] {support['verdict']}")
    balance = next((c for c in checks if c["check"] == "ips_vs_direct"), None)
    if balance is not None and balance["status"] == "FAIL":
        parts.append("IPS vs direct FAIL")
    evidence = ", ".join(parts)
    if (ess < ESS_WARN or (np.isfinite(hill) and hill < HILL_CRIT) or (support and support["verdict"] == "FAIL")
            or (balance is not None and balance["status"] == "FAIL")):
        return "FAIL", evidence
    if (support is not None and support["verdict"] == "PASS" and ess >= ESS_GOOD
            and not (np.isfinite(hill) and hill < HILL_WARN)):
        return "PASS", evidence
    return "UNTESTED", evidence


def _audit_entry(audit: dict | None, what: str) -> tuple[str, str]:
    """Status and evidence of an assumption judged by an audit (transport, or judge = metric)."""
    if audit is None:
        return "UNTESTED", "no labels to audit it"
    status = audit["status"]
    evidence = (f"{audit['source']} audit of {what}: mean residual {audit['delta']:+.4f} "
                f"[{audit['ci_lower']:+.4f}, {audit['ci_upper']:+.4f}] on {audit['n']} labels; PASS needs it "
                f"within +-{audit['tolerance']:.4f} (min of the margin and the estimate's SE), "
                f"detectable bias {audit['detectable_bias']:.4f}")
    if status != "PASS" and not audit["pass_reachable"]:
        evidence += "; a PASS was not reachable with these labels"
    return status, evidence


def assumption_ledger(rests_on: list[str], notes: dict[str, str], *, transport: dict | None,
                      overlap: tuple[str, str], checks: list[dict], judge_audit: dict | None = None,
                      simcal_choice: str | None = None) -> list[dict]:
    """One entry {id, statement, status, evidence} per assumption the estimate rests on.

    Parameters
    ----------
    rests_on : assumption ids (keys of :data:`ASSUMPTIONS`) the estimate rests on.
    notes : {assumption id: text} specific to this estimate.
    transport : the judged transport audit (``Audit.to_dict(verdict)``: pooled probe and
        weighted-label evidence, the latter only when overlap PASSes) or None.
    overlap : :func:`overlap_evidence`'s (status, evidence).
    checks : judged checks (:func:`cje.checks.audits.disagreement`); a FAIL marks every
        assumption it names FAIL. Nothing else a check says changes an entry: a difference
        that is not significant is no evidence.
    judge_audit : the audit of Y - S (is the raw judge score the metric?), for ``naive``.
    simcal_choice : SIMCal-W's direction ('raw' when no projection was admitted).

    Returns
    -------
    list of dict
        The ledger, in the order of ``rests_on``.
    """
    o_status, o_evidence = overlap
    entries = {}
    for aid in rests_on:
        statement = ASSUMPTIONS[aid] + (f". {notes[aid]}" if aid in notes else "")
        if aid == "transport":
            status, evidence = _audit_entry(transport, "Y - f(S)")
        elif aid == "overlap":
            status, evidence = o_status, o_evidence
        elif aid == "transport_or_overlap":
            t_status = transport["status"] if transport is not None else "UNTESTED"
            status = "PASS" if "PASS" in (o_status, t_status) else (
                "FAIL" if o_status == "FAIL" and t_status == "FAIL" else "UNTESTED")
            evidence = f"weights: {o_status} ({o_evidence}); transport audit: {t_status}"
        elif aid in ("fresh_draws", "random_labels"):
            status, evidence = "DESIGN", "holds by how the data were produced; not checkable from them"
        elif aid == "judge_is_metric":
            status, evidence = _audit_entry(judge_audit, "Y - S")
        else:  # monotone_weights
            status, evidence = "PASS", (
                "SIMCal-W admits a monotone projection only when it predicts the weights out of fold better "
                "than the constant and the opposite direction" if simcal_choice != "raw" else
                "no projection admitted: the raw weights are used")
        entries[aid] = {"id": aid, "statement": statement, "status": status, "evidence": evidence}
    for c in checks:
        for aid in c["assumptions"]:
            if aid not in entries:
                continue
            e = entries[aid]
            if c["status"] == "FAIL":
                e["status"] = "FAIL"
            e["evidence"] = "; ".join(x for x in (e["evidence"], (
                f"{c['check']}: difference {c['difference']:+.4f} [{c['ci_lower']:+.4f}, {c['ci_upper']:+.4f}] "
                f"{c['status']}")) if x)
    return list(entries.values())


@dataclass(frozen=True)
class Status:
    """A status on the ladder with the reasons that put it there."""

    status: str
    reasons: list[str]

    @property
    def reliable(self) -> bool:
        return self.status != "CRITICAL"


def policy_status(*, assumptions: list[dict], overlap: float | None, drop_fraction: float,
                  failure: str | None = None, checks: list[dict] = (), fixes: dict[str, str] | None = None,
                  caveat: str | None = None) -> Status:
    """Apply the ladder (module docstring): GOOD only when every assumption was checked.

    Parameters
    ----------
    assumptions : the estimate's ledger (:func:`assumption_ledger`): an entry that FAILs makes
        the policy CRITICAL; one that is UNTESTED caps it at WARNING, with the reason and the fix.
    overlap : judge-score overlap (Bhattacharyya) of fresh draws and logged rows; it speaks to
        calibration transport: < 0.5 CRITICAL and < 0.85 WARNING for estimates resting on it
        (transport, transport_or_overlap, judge_is_metric); for estimates that correct with
        probe labels < 0.5 is a WARNING (the judge then carries almost nothing).
    drop_fraction : share of rows dropped for the policy.
    failure : a per-policy failure message (CRITICAL).
    checks : judged checks; a FAIL of a check that names no assumption (the estimate vs the
        probe-label mean of an estimate resting only on the design) makes the policy CRITICAL
        by itself; the others act through the ledger (a check on an assumption the estimate
        does not rest on, such as transport for a probe-corrected estimate, lowers nothing).
    fixes : {assumption id: what would make GOOD reachable}, overriding :data:`FIXES`
        (the analysis fills in the number of probe labels needed).
    caveat : why an estimate whose checks pass still cannot claim GOOD (a WARNING): a
        material transport failure that the estimate corrects with probe labels alone.

    Returns
    -------
    Status
    """
    level, reasons = 0, []
    fixes = {**FIXES, **(fixes or {})}

    def bump(to: str, why: str) -> None:
        nonlocal level
        level = max(level, STATUS_ORDER[to])
        reasons.append(why)

    ids = {a["id"] for a in assumptions}
    if failure:
        bump("CRITICAL", failure)
    if drop_fraction > 0.5:
        bump("CRITICAL", f"{drop_fraction:.0%} of rows dropped for invalid log-probs or scores")
    elif drop_fraction > 0.1:
        bump("WARNING", f"{drop_fraction:.0%} of rows dropped for invalid log-probs or scores")
    if overlap is not None and np.isfinite(overlap):
        if ids & {"transport", "transport_or_overlap", "judge_is_metric"}:  # the estimate rests on the calibration
            if overlap < OVERLAP_CRIT:
                bump("CRITICAL", f"judge-score overlap {overlap:.2f} < {OVERLAP_CRIT}: the target's responses "
                                 "score unlike the logged ones, so the calibration may not transport")
            elif overlap < OVERLAP_GOOD:
                bump("WARNING", f"judge-score overlap {overlap:.2f} < {OVERLAP_GOOD}")
        elif overlap < OVERLAP_CRIT:  # corrected with probes: valid, but the judge carries almost nothing
            bump("WARNING", f"judge-score overlap {overlap:.2f} < {OVERLAP_CRIT}: the target's responses score "
                            "unlike the logged ones, so the calibrated judge says little about them and the "
                            "estimate rests on the probe labels' correction alone")
    if caveat:
        bump("WARNING", caveat)
    for c in checks:  # a check naming assumptions acts through the ledger; one naming none, by itself
        if c["status"] == "FAIL" and not c["assumptions"]:
            bump("CRITICAL", f"check '{c['check']}' FAILED: difference {c['difference']:+.4f} "
                             f"[{c['ci_lower']:+.4f}, {c['ci_upper']:+.4f}] (p = {c['p_value']:.2g})")
    for a in assumptions:
        if a["status"] == "FAIL":
            bump("CRITICAL", f"assumption '{a['id']}' FAILED: {a['evidence']}")
        elif a["status"] == "UNTESTED" and a["id"] == "judge_is_metric":
            bump("CRITICAL", "naive is a reference only: the raw judge mean is not on the oracle scale unless an "
                             f"audit shows it ({a['evidence']}); use a calibrated estimator")
        elif a["status"] == "UNTESTED":
            fix = fixes.get(a["id"])
            bump("WARNING", f"assumption '{a['id']}' not checked ({a['evidence']})"
                            + (f"; to make GOOD reachable: {fix}" if fix else ""))
    name = {v: k for k, v in STATUS_ORDER.items()}[level]
    return Status(name, reasons)
