"""How GOOD is decided: the assumption ledger and the one status ladder (statistics.md 7).

Every surface (JSON, CSV, dashboard, terminal) reads the status decided here.
Each estimate rests on assumptions (:data:`ASSUMPTIONS`); :func:`assumption_ledger`
records for each whether it was checked: PASS (checked and holds), FAIL, UNTESTED
(not checkable with these data; the status is then at most WARNING, with the fix
from :data:`FIXES`), or DESIGN (holds by how the pipeline produced the data and
cannot be checked from it). :func:`policy_status` turns the ledger, the judge-score
overlap and the rows dropped into GOOD / WARNING / CRITICAL:

===========================  ==========  ===========
rule                         WARNING     CRITICAL
===========================  ==========  ===========
ESS fraction (raw weights)   < 0.30      < 0.10
Hill tail index              < 2         < 1
judge-space overlap (BC)     < 0.85      < 0.50
transport audit              --          FAIL
rows dropped for the policy  > 10%       > 50%
===========================  ==========  ===========

The rows marked ESS, Hill and transport act through the estimate's assumption
ledger (:func:`assumption_ledger`): weight rules only for estimates that rest on the
weights ('overlap'), the transport audit only for estimates that rest on
transport, and any assumption an estimate rests on that was not checked caps it
at WARNING (GOOD means checked). The overlap rule applies to every estimator (a
target whose responses score unlike the logged ones is outside what the logged
data and judge were checked on). ``naive`` rests on "the judge is the metric":
unless an audit (probe labels, or weighted logged labels with Y - S) shows it,
``naive`` is CRITICAL, a reference only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["STATUS_ORDER", "ESS_GOOD", "ESS_WARN", "HILL_WARN", "HILL_CRIT", "OVERLAP_GOOD", "OVERLAP_CRIT",
           "ASSUMPTIONS", "FIXES", "assumption_ledger", "Status", "policy_status"]

STATUS_ORDER = {"GOOD": 0, "WARNING": 1, "CRITICAL": 2}

ESS_GOOD, ESS_WARN = 0.30, 0.10

HILL_WARN, HILL_CRIT = 2.0, 1.0

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


def _overlap_status(raw: dict | None, balance: dict | None) -> tuple[str, str]:
    """overlap: FAIL on ESS < 0.10, Hill < 1 or an IPS-vs-direct FAIL; PASS on ESS >= 0.30,
    Hill >= 2 (or no tail) and no disagreement; otherwise UNTESTED (weak but not broken)."""
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


@dataclass(frozen=True)
class Status:
    """A status on the ladder with the reasons that put it there."""

    status: str
    reasons: list[str]

    @property
    def reliable(self) -> bool:
        return self.status != "CRITICAL"


def policy_status(*, assumptions: list[dict], overlap: float | None, drop_fraction: float,
                  failure: str | None = None) -> Status:
    """Apply the ladder (statistics.md 7, revised: GOOD is a claim that the assumptions were checked).

    assumptions : the estimate's ledger (:func:`cje.checks.status.assumption_ledger`): an entry that
        FAILs makes the policy CRITICAL; one that is UNTESTED caps it at WARNING, with the
        reason and the fix. Weight rules (ESS, Hill) enter through the 'overlap' entry, so
        weights that contribute nothing to an estimate never lower its status.
    overlap : judge-score overlap (Bhattacharyya) of fresh draws and logged rows (every estimator).
    drop_fraction : share of rows dropped for the policy; failure : a per-policy failure message.
    """
    level, reasons = 0, []

    def bump(to: str, why: str) -> None:
        nonlocal level
        level = max(level, STATUS_ORDER[to])
        reasons.append(why)

    if failure:
        bump("CRITICAL", failure)
    if drop_fraction > 0.5:
        bump("CRITICAL", f"{drop_fraction:.0%} of rows dropped for invalid log-probs or scores")
    elif drop_fraction > 0.1:
        bump("WARNING", f"{drop_fraction:.0%} of rows dropped for invalid log-probs or scores")
    if overlap is not None and np.isfinite(overlap):
        if overlap < OVERLAP_CRIT:
            bump("CRITICAL", f"judge-score overlap {overlap:.2f} < {OVERLAP_CRIT}: the target's responses "
                             "score unlike the logged ones, so the calibration may not transport")
        elif overlap < OVERLAP_GOOD:
            bump("WARNING", f"judge-score overlap {overlap:.2f} < {OVERLAP_GOOD}")
    for a in assumptions:
        if a["status"] == "FAIL":
            bump("CRITICAL", f"assumption '{a['id']}' FAILED: {a['evidence']}")
        elif a["status"] == "UNTESTED" and a["id"] == "judge_is_metric":
            bump("CRITICAL", "naive is a reference only: the raw judge mean is not on the oracle scale unless an "
                             f"audit shows it ({a['evidence']}); use a calibrated estimator")
        elif a["status"] == "UNTESTED":
            fix = FIXES.get(a["id"])
            bump("WARNING", f"assumption '{a['id']}' not checked ({a['evidence']})"
                            + (f"; to check it: {fix}" if fix else ""))
    name = {v: k for k, v in STATUS_ORDER.items()}[level]
    return Status(name, reasons)
