"""The decision-first terminal summary of one analysis (what ``cje analyze`` prints, ``Result.summary()``).

Order: what was run (estimator, data, rows, oracle labels with the coverage
requested and used, seed, the real CI level and interval), rows dropped and
warnings, then one line per policy with its estimate and CI *and* its paired
difference against the base (estimate, CI, p-value), then the decision (best
policy, resolved or not, and which policies are not candidates), then where the
dashboard is. Every number is read from the estimates.json payload; the
comparisons come from ``metadata.comparisons`` via :mod:`cje.results.decision`.
"""

from __future__ import annotations

from pathlib import Path

from cje.results.decision import best_policy, comparisons_vs_base, format_p, level_label

__all__ = ["format_summary", "header_lines", "dropped_line"]


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
