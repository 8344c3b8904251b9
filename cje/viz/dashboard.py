"""``diagnostics_dashboard.html``: one self-contained page per analysis.

Sections: the decision (each target against the base, the best policy and
whether it is resolved, from :mod:`cje.results.decision`), a status overview, the
estimates table (with ground truth when known), the per-policy diagnostics,
status reasons, assumptions and checks, pairwise comparisons, the calibration
summary and the plots (embedded PNGs). Tables sort by clicking a header; the estimates and
diagnostics tables filter by text and status. See :mod:`cje.viz.html`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from cje.atomic import atomic_write_text
from cje.results.decision import assumption_items, best_policy, comparisons_vs_base, format_p, level_label
from cje.viz.html import cell, esc, filter_controls, image_figure, page, status_badge, table
from cje.viz.style import config_caption, fmt, publish_mode

__all__ = ["PLOT_CAPTIONS", "build_dashboard", "write_dashboard", "decision_html"]

STATUS_RANK = {"GOOD": 0, "WARNING": 1, "CRITICAL": 2}

# Caption per plot file: shown under each image (and proposed for the Snakemake report, docs/viz.md).
PLOT_CAPTIONS = {
    "policy_estimates.png": (
        "Estimate and confidence interval per target policy, coloured and shaped by status "
        "(GOOD circle, WARNING triangle, CRITICAL cross on a shaded row: not to be trusted). "
        "Black square and dashed line: the base policy's on-policy estimate. Blue plus: the naive mean "
        "judge score of the policy's fresh draws (what an uncalibrated judge would report). Black diamond: "
        "ground truth (mean oracle label of the fresh draws, ± 1.96 SE) when known."),
    "weight_distributions.png": (
        "Distribution of the importance weights per target policy on log-log axes: raw self-normalised "
        "weights (filled) against the weights the estimator used (outline). ESS fraction and the largest "
        "weight are in the legend; raw ESS < 30% or a heavy tail lowers the policy's status."),
    "calibration_curve.png": (
        "Left: oracle label against judge score for the labelled logged rows, the isotonic calibration f "
        "and its out-of-fold predictions. Right: reliability of the out-of-fold predictions in quantile "
        "bins (mean oracle label ± 1.96 SE); points on the diagonal mean the calibration is honest."),
}


def _pct(value) -> str:
    return fmt(value, ".1%", "")


def _num(value, spec: str = ".3f") -> str:
    return fmt(value, spec, "")


def _row_attrs(name: str, status: str, reliable: bool) -> dict:
    attrs = {"data-policy": name, "data-status": status}
    if not reliable:
        attrs["class"] = "unreliable"
    return attrs


def _status_cell(status: str) -> str:
    return cell(status_badge(status), STATUS_RANK.get(status, 3), raw_html=True, cls="text")


def _estimates_table(meta: dict) -> str:
    truths = meta.get("ground_truth") or {}
    level = (meta.get("inference") or {}).get("level", 0.95)
    rows = []
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        t = truths.get(name) or {}
        d = meta["diagnostics"].get(name) or {}
        raw, used = d.get("weights_raw") or {}, d.get("weights_used") or {}
        ci = "" if r["ci_lower"] is None else f"[{r['ci_lower']:.3f}, {r['ci_upper']:.3f}]"
        in_ci = t.get("in_ci")
        reasons = "".join(f"<li>{esc(x)}</li>" for x in r["reasons"]) or "<li>none</li>"
        cells = (cell(name, name, "text") + _status_cell(r["status"])
                 + cell("withheld" if r["estimate"] is None else _num(r["estimate"]), r["estimate"])
                 + cell(ci, r["ci_lower"]) + cell(_num(r["se"], ".4f"), r["se"])
                 + cell(_num(t.get("truth")), t.get("truth")) + cell(_num(t.get("error"), "+.3f"), t.get("error"))
                 + cell("" if in_ci is None else ("yes" if in_ci else "NO"), in_ci)
                 + cell(_pct(raw.get("ess")), raw.get("ess")) + cell(_pct(used.get("ess")), used.get("ess"))
                 + cell(_num(used.get("max_weight"), ".3g"), used.get("max_weight"))
                 + cell(r["n_used"], r["n_used"])
                 + cell(f'<ul class="reasons">{reasons}</ul>', len(r["reasons"]), raw_html=True, cls="text wrap"))
        rows.append((cells, _row_attrs(name, r["status"], r["reliable"])))
    headers = ["policy", "status", "estimate", f"{level_label(level)} CI",
               ("SE", "standard error incl. oracle uncertainty"),
               ("truth", "mean oracle label of the policy's fresh draws"), ("error", "estimate - truth"),
               ("truth in CI", "is the truth inside the CI?"),
               ("raw ESS", "ESS fraction (sum W)^2 / (n sum W^2) of the raw importance weights"),
               ("used ESS", "ESS fraction of the weights the estimator used (empty: it uses none)"),
               ("used max weight", "largest weight used (mean-1 scale)"), "rows used", "status reasons"]
    return table("estimates", headers, rows, filterable=True, text_columns=(0, 1, 12))


def _support_text(support: dict | None) -> str:
    """'m [lower, upper] VERDICT' of the support check, or an em dash."""
    if not support or support.get("m") is None:
        return "\u2014"
    lo, hi = support.get("lower"), support.get("upper")
    bounds = f" [{_num(lo)}, {_num(hi) if hi is not None else 'inf'}]"
    return f"{_num(support['m'])}{bounds} {support.get('verdict', '')}".strip()


def _diagnostics_table(meta: dict) -> str:
    rows = []
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        d = meta["diagnostics"].get(name) or {}
        raw, used = d.get("weights_raw") or {}, d.get("weights_used") or {}
        transport = d.get("transport") or {}
        t_text = transport.get("status", "not run")
        if transport.get("delta") is not None:
            n_audit = next((transport[k] for k in ("n_probe", "n_labels", "n") if transport.get(k) is not None), "?")
            source = f"{transport['source']}, " if transport.get("source") else ""
            t_text += f" ({source}delta {transport['delta']:+.3f}, n={n_audit})"
        dropped = sum(r["n_dropped_by_reason"].values())
        cells = (cell(name, name, "text") + _status_cell(r["status"])
                 + cell(_pct(raw.get("ess")), raw.get("ess")) + cell(_num(raw.get("max_weight"), ".3g"),
                                                                     raw.get("max_weight"))
                 + cell(_pct(raw.get("top5_share")), raw.get("top5_share"))
                 + cell(_num(raw.get("hill_index"), ".2f"), raw.get("hill_index"))
                 + cell(_num(raw.get("hellinger_affinity")), raw.get("hellinger_affinity"))
                 + cell(_support_text(d.get("support")), (d.get("support") or {}).get("m"), "text")
                 + cell(_pct(used.get("ess")), used.get("ess"))
                 + cell(_num(used.get("max_weight"), ".3g"), used.get("max_weight"))
                 + cell(_num(d.get("judge_overlap")), d.get("judge_overlap"))
                 + cell(_pct(d.get("out_of_range_mass")), d.get("out_of_range_mass"))
                 + cell(_num(d.get("fresh_draws_mean_judge")), d.get("fresh_draws_mean_judge"))
                 + cell(t_text, transport.get("delta"), "text wrap")
                 + cell(dropped, dropped))
        rows.append((cells, _row_attrs(name, r["status"], r["reliable"])))
    headers = ["policy", "status", ("raw ESS", "(sum W)^2 / (n sum W^2) of the raw weights; < 30% WARNING"),
               "raw max W", ("raw top-5% share", "share of weight on the top 5% of rows"),
               ("raw Hill index", "tail index; < 2 infinite variance, < 1 infinite mean"),
               ("raw Hellinger affinity", "mean sqrt(W); 1 = identical policies"),
               ("support", "mean of the unnormalised ratios exp(lp_target - lp_base) with one-sided 99% bounds: 1 when "
                           "the base covers the target, 1 - q when the target puts mass q where the base never goes; "
                           "upper bound < 0.9 FAILs overlap"),
               "used ESS", "used max W",
               ("judge overlap", "Bhattacharyya coefficient of fresh vs logged judge scores; < 0.5 CRITICAL"),
               ("out-of-range mass", "share of fresh judge scores outside the labelled score range"),
               ("fresh mean judge", "naive mean judge score of the fresh draws"),
               ("transport audit", "mean residual Y - f(S') on probe labels"), "rows dropped"]
    return table("diagnostics", headers, rows, filterable=True, text_columns=(0, 1, 12))


def _assumptions_html(block: dict) -> str:
    items = []
    for a in assumption_items(block):
        status = f" <b>{esc(a['status'])}</b>" if a.get("status") else ""
        evidence = f" <span class='muted'>({esc(a['evidence'])})</span>" if a.get("evidence") else ""
        items.append(f"<li>{esc(a['statement'])}{status}{evidence}</li>")
    return "".join(items) or "<li>none recorded</li>"


def _checks_html(block: dict) -> str:
    """``metadata.policies[p].checks``: one line per check (name, verdict, difference and CI when given)."""
    items = []
    for c in block.get("checks") or []:
        if not isinstance(c, dict):
            items.append(f"<li>{esc(c)}</li>")
            continue
        name = c.get("check") or c.get("name") or c.get("id") or "check"
        parts = [f"<b>{esc(name)}</b>", esc(c.get("status", ""))]
        if c.get("difference") is not None:
            ci = "" if c.get("ci_lower") is None else f" [{c['ci_lower']:+.4f}, {c['ci_upper']:+.4f}]"
            parts.append(f"difference {c['difference']:+.4f}{ci}")
        if c.get("p_value") is not None:
            parts.append(f"p = {format_p(c['p_value'])}")
        if c.get("assumptions"):
            parts.append("bears on: " + esc(", ".join(map(str, c["assumptions"]))))
        items.append("<li>" + " ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if parts[2:] else "") + "</li>")
    return f"<p>Checks:</p><ul>{''.join(items)}</ul>" if items else ""


def _details(meta: dict) -> str:
    parts = []
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        reasons = "".join(f"<li>{esc(x)}</li>" for x in r["reasons"]) or "<li>no rule triggered</li>"
        dropped = ", ".join(f"{esc(k)}: {v}" for k, v in r["n_dropped_by_reason"].items()) or "none"
        verdict = "reliable" if r["reliable"] else "UNRELIABLE: do not ship on this number"
        parts.append(f'<details open><summary><b>{esc(name)}</b> {status_badge(r["status"])} {esc(verdict)}'
                     f'</summary><p>Why this status:</p><ul>{reasons}</ul><p>This estimate assumes:</p>'
                     f'<ul>{_assumptions_html(r)}</ul>{_checks_html(r)}'
                     f'<p class="muted">Rows dropped by reason: {dropped}</p></details>')
    return "".join(parts)


def decision_html(payload: dict) -> str:
    """The decision block: best policy (resolved or not) and each target against the base.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.

    Returns
    -------
    str
        An HTML fragment.
    """
    meta = payload["metadata"]
    best = best_policy(payload)
    level = level_label((meta.get("inference") or {}).get("level", 0.95))
    rows = []
    for name, c in comparisons_vs_base(payload).items():
        r = meta["policies"][name]
        ci = "" if c.ci_lower is None else f"[{c.ci_lower:+.3f}, {c.ci_upper:+.3f}]"
        verdict = ("better than base" if c.separated and c.difference > 0 else
                   "worse than base" if c.separated else "not distinguishable from base")
        cells = (cell(name, name, "text") + cell(status_badge(r["status"]), r["status"], raw_html=True, cls="text")
                 + cell(_num(c.difference, "+.3f"), c.difference) + cell(ci, c.ci_lower)
                 + cell(format_p(c.p_value), c.p_value) + cell(verdict, verdict, "text"))
        rows.append((cells, {"data-policy": name, "data-status": r["status"]}))
    table_html = table("decision", ["policy", "status", "difference vs base", f"{level} CI", "p-value",
                                    "verdict"], rows, text_columns=(0, 1, 5)) if rows else ""
    excluded = "".join(f"<li>{esc(p)}: {esc(why)}</li>" for p, why in best.excluded.items())
    return (f"<p class='decision'><b>{esc(best.describe())}</b></p>{table_html}"
            + (f"<p class='muted'>Not candidates:</p><ul>{excluded}</ul>" if excluded else ""))


def _base_and_comparisons(meta: dict) -> str:
    out = []
    base = meta.get("base_policy")
    if base:
        out.append(f"<p>Base policy (logged, on-policy): estimate <b>{fmt(base['estimate'])}</b> "
                   f"[{fmt(base.get('ci_lower'))}, {fmt(base.get('ci_upper'))}], mean judge score "
                   f"{fmt(base.get('mean_judge_score'))}, held-out oracle mean "
                   f"{fmt(base.get('held_out_oracle_mean'))}. <span class='muted'>{esc(base.get('method', ''))}"
                   "</span></p>")
    comps = meta.get("comparisons") or []
    if meta.get("comparisons_mode") == "base":
        out.append("<p class='muted'>Paired comparisons computed: each target against the base, and the best "
                   "candidate against each other candidate (what the decision reads). Every pair: "
                   "<code>cje analyze --comparisons all</code>.</p>")
    if comps:
        rows = []
        for c in comps:
            ci = "" if c["ci_lower"] is None else f"[{c['ci_lower']:+.3f}, {c['ci_upper']:+.3f}]"
            cells = (cell(c["policy_a"], c["policy_a"], "text") + cell(c["policy_b"], c["policy_b"], "text")
                     + cell(_num(c["difference"], "+.4f"), c["difference"]) + cell(ci, c["ci_lower"])
                     + cell(_num(c["se"], ".4f"), c["se"]) + cell(_num(c["p_value"], ".3g"), c["p_value"]))
            rows.append((cells, {}))
        out.append(table("comparisons", ["policy A", "policy B", "difference A - B", "CI", "SE", "p-value"],
                         rows, text_columns=(0, 1)))
    return "".join(out)


def _calibration(meta: dict) -> str:
    cal = meta["calibration"]
    rng = cal.get("score_range")
    items = [f"mode: {esc(cal['mode'])}", f"oracle labels used: {meta['n_oracle']}",
             f"out-of-fold RMSE: {fmt(cal.get('oof_rmse'))}", f"out-of-fold R²: {fmt(cal.get('oof_r2'))}"]
    if rng:
        items.append(f"labelled judge-score range: [{fmt(rng[0])}, {fmt(rng[1])}]")
    inference = meta.get("inference") or {}
    for key in ("interval", "df", "oua", "cluster", "bounds"):
        if key in inference:
            items.append(f"inference {esc(key)}: {esc(inference[key])}")
    warnings = list(cal.get("warnings") or [])
    return "<ul>" + "".join(f"<li>{x}</li>" for x in items) + "".join(
        f'<li class="warn">warning: {esc(w)}</li>' for w in warnings) + "</ul>"


def build_dashboard(payload: dict, plot_paths: Sequence[Path]) -> str:
    """The dashboard HTML for one estimates.json ``payload``; ``plot_paths`` are PNGs to embed.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    plot_paths : sequence of Path
        PNGs to embed.

    Returns
    -------
    str
        A self-contained HTML document.
    """
    meta = payload["metadata"]
    counts = {s: sum(meta["policies"][p]["status"] == s for p in meta["target_policies"]) for s in STATUS_RANK}
    overview = " ".join(f"{status_badge(s)} {n}" for s, n in counts.items())
    warnings = "".join(f'<li class="warn">{esc(w)}</li>' for w in meta.get("warnings") or [])
    truth_note = ("Ground truth: mean oracle label of each policy's labelled fresh draws."
                  if meta.get("ground_truth") else "No ground truth in this run (no oracle labels on fresh draws).")
    order = {"policy_estimates.png": 0, "weight_distributions.png": 1, "calibration_curve.png": 2}
    pngs = sorted((Path(p) for p in plot_paths if str(p).endswith(".png")), key=lambda p: order.get(p.name, 3))
    figures = "".join(image_figure(p, p.stem.replace("_", " "), PLOT_CAPTIONS.get(p.name, "")) for p in pngs)
    if not any(p.name == "weight_distributions.png" for p in pngs):
        figures += "<p class='muted'>Weight and calibration plots need plot_data.npz; not rendered.</p>"
    body = (
        f"<section><h2>Decision</h2>{decision_html(payload)}</section>"
        f"<section><h2>Overview</h2><p>Policies by status: {overview}</p>"
        f"{'<ul>' + warnings + '</ul>' if warnings else ''}<p class='muted'>{esc(truth_note)} "
        "CRITICAL policies are reported but marked unreliable; do not ship a policy on an unreliable number.</p>"
        f"{filter_controls()}</section>"
        f"<section><h2>Estimates</h2>{_estimates_table(meta)}</section>"
        f"<section><h2>Diagnostics per policy</h2>{_diagnostics_table(meta)}</section>"
        f"<section><h2>Plots</h2>{figures}</section>"
        f"<section><h2>Status reasons and assumptions</h2>{_details(meta)}</section>"
        f"<section><h2>Base policy and pairwise comparisons</h2>{_base_and_comparisons(meta)}</section>"
        f"<section><h2>Calibration and inference</h2>{_calibration(meta)}</section>")
    header = [config_caption(payload),
              f"created {meta.get('created_at', 'unknown')} by cje {meta.get('cje_version', '')}; "
              f"data: {(meta.get('inputs') or {}).get('data', 'unknown')}"]
    title = f"CJE diagnostics: {meta['estimator']}, oracle coverage {meta['oracle_coverage']:g}, seed {meta['seed']}"
    return page(title, header, body)


def write_dashboard(payload: dict, plot_paths: Sequence[Path], path: str | Path) -> Path:
    """Write :func:`build_dashboard` to ``path`` atomically; return the path.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    plot_paths : sequence of Path
        PNGs to embed.
    path : str or Path
        The HTML file.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    atomic_write_text(path, build_dashboard(payload, plot_paths))
    publish_mode(path)
    return path
