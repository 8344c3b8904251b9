"""The decision-first terminal summary of one analysis (what ``cje analyze`` prints, ``Result.summary()``).

Order: what was run (estimator, data, rows, oracle labels with the coverage
requested and used, seed, the real CI level and interval), rows dropped and
warnings, then one line per policy with its estimate and CI *and* its paired
difference against the base (estimate, CI, p-value), then the decision (best
policy, resolved or not, and which policies are not candidates), then where the
dashboard is. Every number is read from the estimates.json payload; the
comparisons come from ``metadata.comparisons`` via :mod:`cje.results.decision`.

:func:`summary_record` is the same summary as one JSON object for scripts
(``cje analyze --json``); its keys are documented in docs/api.md ("The --json summary")
and only ever gain new keys within ``SUMMARY_SCHEMA``.
"""

from __future__ import annotations

from pathlib import Path

from cje.results.decision import best_policy, comparisons_vs_base, format_p, level_label
from cje.results.model import to_jsonable

__all__ = ["format_summary", "header_lines", "dropped_line", "summary_record", "SUMMARY_SCHEMA"]

SUMMARY_SCHEMA = "cje.analyze.summary/1"  # the "schema" key of summary_record


def _f(value, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def header_lines(meta: dict) -> list[str]:
    """What was run: estimator, data, rows, labels (coverage requested vs used), seed, level, interval.

    Parameters
    ----------
    meta : dict
        The payload's ``metadata``.

    Returns
    -------
    list of str
        Two lines.
    """
    inference = meta.get("inference") or {}
    level = level_label(inference.get("level"))
    data = (meta.get("inputs") or {}).get("data") or "data"
    used = meta.get("oracle_coverage_used")
    coverage = f"coverage {meta['oracle_coverage']:g} requested"
    coverage += f", {used:.3g} used" if used is not None else ""
    interval = inference.get("interval", "t")
    return [f"{meta['estimator']} on {data}",
            f"  {meta['n_samples']} logged rows, {meta['n_oracle']} oracle labels ({coverage}), "
            f"seed {meta['seed']}, {level} CIs ({interval})"]


def dropped_line(meta: dict) -> str:
    """Rows dropped per policy and reason, or 'none'.

    Parameters
    ----------
    meta : dict
        The payload's ``metadata``.

    Returns
    -------
    str
        One line.
    """
    parts = []
    for name in meta["target_policies"]:
        counts = meta["policies"][name].get("n_dropped_by_reason") or {}
        total = sum(counts.values())
        if total:
            parts.append(f"{name} {total} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")
    return "  rows dropped: " + ("; ".join(parts) if parts else "none")


def format_summary(payload: dict, dashboard: str | Path | None = None, dashboard_hint: str | None = None) -> str:
    """The terminal text of one analysis (module docstring).

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    dashboard : str, Path or None, default=None
        Path of the written dashboard, or None.
    dashboard_hint : str or None, default=None
        Without a dashboard, how to get one (e.g. "add --plots").

    Returns
    -------
    str
        The text ``cje analyze`` prints.
    """
    meta = payload["metadata"]
    level = level_label((meta.get("inference") or {}).get("level"))
    truth = meta.get("ground_truth") or {}
    vs_base = comparisons_vs_base(payload)
    lines = header_lines(meta) + [dropped_line(meta)]
    lines += [f"  warning: {w}" for w in meta.get("warnings") or []]
    ci_head = f"{level} CI"
    head = (f"{'policy':<26}{'estimate':>9}{ci_head:>17}  {'vs base':>8}{ci_head:>19}{'p':>8}  {'status':<9}")
    if truth:
        head += f"{'truth':>7}{'in CI':>7}"
    lines += ["", head]
    base = meta.get("base_policy")
    if base:
        ci = "" if base.get("ci_lower") is None else f"[{base['ci_lower']:.3f}, {base['ci_upper']:.3f}]"
        lines.append(f"{'base (logged)':<26}{_f(base['estimate']):>9}{ci:>17}")
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        est = "withheld" if r["estimate"] is None else f"{r['estimate']:.3f}"
        ci = "" if r["ci_lower"] is None else f"[{r['ci_lower']:.3f}, {r['ci_upper']:.3f}]"
        c = vs_base.get(name)
        diff = "" if c is None or c.difference is None else f"{c.difference:+.3f}"
        dci = "" if c is None or c.ci_lower is None else f"[{c.ci_lower:+.3f}, {c.ci_upper:+.3f}]"
        p = "" if c is None else format_p(c.p_value)
        line = f"{name:<26}{est:>9}{ci:>17}  {diff:>8}{dci:>19}{p:>8}  {r['status']:<9}"
        if truth:
            t = truth.get(name)
            in_ci = "" if t is None or t.get("in_ci") is None else ("yes" if t["in_ci"] else "NO")
            line += f"{'' if t is None else format(t['truth'], '.3f'):>7}{in_ci:>7}"
        lines.append(line.rstrip())
        lines += [f"    - {reason}" for reason in r["reasons"]]
    best = best_policy(payload)
    lines += ["", best.describe()]
    if best.excluded:
        lines.append("Not candidates: " + "; ".join(f"{p} ({why})" for p, why in best.excluded.items()))
    if dashboard is not None:
        lines.append(f"Dashboard: {dashboard}")
    elif dashboard_hint:
        lines.append(f"Dashboard: not written ({dashboard_hint})")
    return "\n".join(lines)


def _comparison_record(c) -> dict | None:
    if c is None:
        return None
    return {"policy_a": c.policy_a, "policy_b": c.policy_b, "difference": c.difference, "se": c.se,
            "ci_lower": c.ci_lower, "ci_upper": c.ci_upper, "p_value": c.p_value, "separated": c.separated}


def summary_record(payload: dict, files: dict[str, str | None] | None = None) -> dict:
    """The terminal summary as one JSON-ready object (``cje analyze --json``; keys in docs/api.md).

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    files : dict of str to str or None, default=None
        The written files ({"json", "csv", "plot_data", "dashboard"}), when there are any.

    Returns
    -------
    dict
        Strict JSON (NaN and inf as null): ``schema``, ``estimator``, ``data``, ``n_samples``,
        ``n_oracle``, ``oracle_coverage``, ``oracle_coverage_used``, ``seed``, ``level``, ``base``,
        ``policies`` (one object per target, in output order), ``best``, ``comparisons_mode``,
        ``warnings``, ``withheld``, ``files``.
    """
    meta = payload["metadata"]
    vs_base = comparisons_vs_base(payload)
    truth = meta.get("ground_truth") or {}
    base = meta.get("base_policy")
    policies = []
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        t = truth.get(name)
        policies.append({"policy": name, "estimate": r["estimate"], "se": r["se"], "ci_lower": r["ci_lower"],
                         "ci_upper": r["ci_upper"], "status": r["status"], "reliable": r["reliable"],
                         "reasons": list(r["reasons"]), "vs_base": _comparison_record(vs_base.get(name)),
                         "truth": None if t is None else t.get("truth"),
                         "truth_in_ci": None if t is None else t.get("in_ci")})
    best = best_policy(payload)
    return to_jsonable({"schema": SUMMARY_SCHEMA, "estimator": meta["estimator"],
            "data": (meta.get("inputs") or {}).get("data"), "n_samples": meta["n_samples"],
            "n_oracle": meta["n_oracle"], "oracle_coverage": meta["oracle_coverage"],
            "oracle_coverage_used": meta.get("oracle_coverage_used"), "seed": meta["seed"],
            "level": (meta.get("inference") or {}).get("level", 0.95),
            "base": None if not base else {"estimate": base.get("estimate"), "ci_lower": base.get("ci_lower"),
                                           "ci_upper": base.get("ci_upper")},
            "policies": policies,
            "best": {"policy": best.policy, "estimate": best.estimate, "resolved": best.resolved,
                     "closest": _comparison_record(best.closest), "candidates": list(best.candidates),
                     "excluded": dict(best.excluded), "text": best.describe()},
            "comparisons_mode": meta.get("comparisons_mode", "all"),
            "warnings": list(meta.get("warnings") or []),
            "withheld": [p for p in meta["target_policies"] if meta["policies"][p]["estimate"] is None],
            "files": dict(files or {})})
