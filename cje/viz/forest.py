"""Forest plot of the policy estimates with their CIs, references and ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cje.results.decision import level_label
from cje.viz.style import (
    OKABE_ITO,
    STATUS_COLOURS,
    STATUS_MARKERS,
    STATUS_TEXT_COLOURS,
    config_caption,
    fmt,
    new_figure,
    save_png,
)

__all__ = ["policy_estimates_figure", "plot_policy_estimates"]

_TRUTH_OFFSET = 0.28  # truth is drawn just below its policy's estimate row


def _finite(*values) -> list[float]:
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def policy_estimates_figure(payload: dict) -> Figure:
    """Forest plot: one row per target policy (estimate with its CI), plus the base policy.

    Drawn per target: the estimate and its CI (``ci_lower``/``ci_upper``, level from
    ``metadata.inference.level``), with colour and marker by status; CRITICAL
    (``reliable: false``) rows are shaded and labelled "UNRELIABLE"; withheld (null)
    estimates are written out. References drawn: the base policy's on-policy estimate (row
    and dashed line), each policy's naive mean judge score of its fresh draws
    (``diagnostics[p].fresh_draws_mean_judge``; ``base_policy.mean_judge_score`` for base),
    and the ground truth (``ground_truth[p].truth`` +- 1.96 ``truth_se``) when known.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.

    Returns
    -------
    matplotlib.figure.Figure
        The forest plot.
    """
    meta = payload["metadata"]
    policies = list(meta["target_policies"])
    base = meta.get("base_policy") or {}
    truths = meta.get("ground_truth") or {}
    level = (meta.get("inference") or {}).get("level", 0.95)
    rows = ["base"] + policies if base else policies
    fig = new_figure(9.0, 1.4 + 0.85 * len(rows) + 0.8)
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    y_of = {name: len(rows) - 1 - i for i, name in enumerate(rows)}
    xs: list[float] = []
    if base:
        y = y_of["base"]
        ax.axvline(base["estimate"], color="#555555", linestyle="--", linewidth=1, zorder=1)
        if base.get("ci_lower") is not None:
            ax.plot([base["ci_lower"], base["ci_upper"]], [y, y], color="black", linewidth=2)
        ax.plot(base["estimate"], y, "s", color="black", markersize=7, zorder=3)
        if base.get("mean_judge_score") is not None:
            ax.plot(base["mean_judge_score"], y, "P", color=OKABE_ITO["sky_blue"], markersize=9,
                    markeredgecolor="black", markeredgewidth=0.5, zorder=3)
        xs += _finite(base["estimate"], base.get("ci_lower"), base.get("ci_upper"), base.get("mean_judge_score"))
        ax.annotate(f"{fmt(base['estimate'])} [{fmt(base.get('ci_lower'))}, {fmt(base.get('ci_upper'))}]",
                    (base["estimate"], y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
    labels = {"base": "base (logged)\non-policy"} if base else {}
    for name in policies:
        r = meta["policies"][name]
        y = y_of[name]
        status = r["status"]
        colour = STATUS_COLOURS.get(status, "black")
        labels[name] = f"{name}\n{status}" + ("" if r["reliable"] else " - UNRELIABLE")
        if not r["reliable"]:
            ax.axhspan(y - 0.45, y + 0.45, color=STATUS_COLOURS["CRITICAL"], alpha=0.08, zorder=0)
        judge_mean = (meta["diagnostics"].get(name) or {}).get("fresh_draws_mean_judge")
        if judge_mean is not None:
            ax.plot(judge_mean, y, "P", color=OKABE_ITO["sky_blue"], markersize=9, markeredgecolor="black",
                    markeredgewidth=0.5, zorder=3)
            xs += _finite(judge_mean)
        t = truths.get(name)
        if t is not None:
            half = 1.96 * (t.get("truth_se") or 0.0)
            ax.errorbar(t["truth"], y - _TRUTH_OFFSET, xerr=half, fmt="D", color="black", markersize=5,
                        capsize=2, linewidth=1, zorder=3)
            xs += _finite(t["truth"] - half, t["truth"] + half)
        if r["estimate"] is None:
            ax.text(0.5, y, "estimate withheld (--refuse-unreliable)", transform=ax.get_yaxis_transform(),
                    ha="center", va="center", fontsize=8, color=STATUS_TEXT_COLOURS.get(status, "black"),
                    style="italic")
            continue
        if r["ci_lower"] is not None:
            ax.plot([r["ci_lower"], r["ci_upper"]], [y, y], color=colour, linewidth=2.5, zorder=2)
        ax.plot(r["estimate"], y, STATUS_MARKERS.get(status, "o"), color=colour, markersize=9,
                markeredgecolor="black", markeredgewidth=0.6, zorder=4)
        xs += _finite(r["estimate"], r["ci_lower"], r["ci_upper"])
        ax.annotate(f"{fmt(r['estimate'])} [{fmt(r['ci_lower'])}, {fmt(r['ci_upper'])}]", (r["estimate"], y),
                    textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7, color="black")
    ax.set_yticks([y_of[n] for n in rows], [labels[n] for n in rows], fontsize=8)
    for tick, name in zip(ax.get_yticklabels(), rows):
        if name != "base":
            tick.set_color(STATUS_TEXT_COLOURS.get(meta["policies"][name]["status"], "black"))
    ax.set_ylim(-0.7, len(rows) - 0.4)
    if xs:
        lo, hi = min(xs), max(xs)
        pad = max(0.03, 0.08 * (hi - lo))
        ax.set_xlim(max(-0.05, lo - pad), min(1.05, hi + pad))
    ax.grid(axis="x", color="#dddddd", linewidth=0.7)
    ax.set_xlabel("policy value: expected oracle score (0-1 scale)")
    handles = [Line2D([], [], marker=STATUS_MARKERS[s], color=STATUS_COLOURS[s], markeredgecolor="black",
                      linewidth=2.5, label=f"{s} estimate, {level_label(level)} CI") for s in STATUS_MARKERS]
    handles += [Line2D([], [], marker="s", color="black", linewidth=2, label="base on-policy estimate (dashed)"),
                Line2D([], [], marker="P", color=OKABE_ITO["sky_blue"], markeredgecolor="black", linestyle="",
                       markersize=9, label="naive mean judge score")]
    if truths:
        handles.append(Line2D([], [], marker="D", color="black", linewidth=1,
                              label="ground truth ± 1.96 SE (fresh-draw oracle mean)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    fig.suptitle(f"Policy value estimates ({meta['estimator']}); shaded rows are CRITICAL: do not trust them",
                 fontsize=11)
    ax.set_title(config_caption(payload), fontsize=8, color="#444444")
    return fig


def plot_policy_estimates(payload: dict, path: str | Path) -> Path:
    """Write :func:`policy_estimates_figure` as a PNG at ``path`` (atomically); return the path.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    path : str or Path
        The PNG.

    Returns
    -------
    Path
        ``path``.
    """
    return save_png(policy_estimates_figure(payload), path)
