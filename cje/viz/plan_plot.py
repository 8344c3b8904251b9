"""The figure of ``cje plan``: CI half-width against oracle labels, one curve per target."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from cje.results.decision import level_label
from cje.viz.style import new_figure, policy_colour

__all__ = ["plan_figure"]


def plan_figure(plan) -> Figure:
    """Half-width(m) of each target of a :class:`cje.analysis.plan.Plan` on log-log axes.

    Drawn per target: the model curve from m0/4 to n labels, the pilot's realised
    half-width at m0 (circle: the curve must pass through it), the goal (dotted;
    for a separation, the half-width at which the margin is detected with the
    planned power), the planned label count (dashed vertical) and the floor left
    by sampling error alone (thin grey).

    Parameters
    ----------
    plan : Plan
        A label plan.

    Returns
    -------
    matplotlib.figure.Figure
        The plan's figure.
    """
    fig = new_figure(8.0, 5.0)
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    m0, n = plan.pilot_labels, plan.n_samples
    grid = np.unique(np.geomspace(max(2.0, m0 / 4), n, 160).round().astype(int))
    for i, t in enumerate(plan.targets):
        colour = policy_colour(i)
        ax.plot(grid, plan.curve(t, grid), color=colour, linewidth=1.8, label=t.name)
        if t.parts.pilot_half_width is not None:
            ax.plot([m0], [t.parts.pilot_half_width], "o", color=colour, markeredgecolor="black", zorder=3)
        goal = t.goal if t.kind == "half_width" else t.half_width_at_plan
        if t.kind == "separation":
            ax.axhline(goal, color=colour, linestyle=":", linewidth=1.2)
        if t.labels_needed is not None:
            ax.axvline(t.labels_needed, color=colour, linestyle="--", linewidth=1)
            ax.annotate(f"{t.labels_needed}", (t.labels_needed, goal), textcoords="offset points", xytext=(4, 4),
                        fontsize=8, color="black")
        ax.axhline(t.floor_half_width, color="#999999", linewidth=0.8)
    goals = {t.goal for t in plan.targets if t.kind == "half_width"}
    for goal in goals:
        ax.axhline(goal, color="black", linestyle=":", linewidth=1.2, label=f"goal ±{goal:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("oracle labels m (log)")
    ax.set_ylabel(f"{level_label(plan.level)} CI half-width (log)")
    kind = "separation" if any(t.kind == "separation" for t in plan.targets) else "half-width"
    ax.set_title(f"Oracle labels needed ({kind} target); circles: pilot at m0 = {m0:g}; dashed: plan; "
                 "grey: floor (sampling error only)", fontsize=9)
    ax.grid(color="#e5e5e5", linewidth=0.6, which="both")
    ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"cje plan: {plan.estimator}, n = {n} logged rows, K = {plan.n_folds} folds, "
                 f"{plan.n_pilots} pilot run(s)", fontsize=11)
    return fig
