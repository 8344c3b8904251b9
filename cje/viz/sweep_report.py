"""``summary.html`` and its figure: estimate vs oracle coverage per estimator, accuracy tables,
a link to every run's dashboard, and what the run cost (``results/cost.json`` of ``cje cost``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import polars as pl

from cje.atomic import atomic_write_text
from cje.viz.html import cell, esc, filter_controls, image_figure, page, status_badge, table
from cje.viz.style import fmt, panel_grid, policy_colour, publish_mode, save_png
from cje.viz.sweep import accuracy_by_policy, accuracy_table

__all__ = ["plot_estimates_vs_coverage", "build_summary_html", "write_summary_html", "COVERAGE_CAPTION",
           "DASHBOARD_RELPATH", "runs_html", "cost_html"]

# where `cje analyze --plots` puts a run's dashboard, relative to its estimates.json
DASHBOARD_RELPATH = Path("plots") / "diagnostics_dashboard.html"

COVERAGE_CAPTION = (
    "Estimate against oracle coverage, one panel per target policy and one colour per estimator: "
    "the line joins the mean estimate over seeds, the band spans the mean CI bounds, error bars "
    "show each seed's CI (dodged sideways), hollow markers are runs with an unreliable (CRITICAL) "
    "estimate. Black dashed line and grey band: ground truth ± 1.96 SE when known.")


def plot_estimates_vs_coverage(frame: pl.DataFrame, path: str | Path) -> Path:
    """One panel per policy: estimate (mean over seeds) vs oracle coverage per estimator, CI band, truth.

    The x axis is logarithmic when the coverages span more than a factor of 4.

    Parameters
    ----------
    frame : polars.DataFrame
        The summary frame (:func:`cje.viz.sweep.load_summary`).
    path : str or Path
        The PNG to write.

    Returns
    -------
    Path
        ``path``.
    """
    policies = frame["policy"].unique(maintain_order=True).sort().to_list()
    estimators = frame["estimator"].unique().sort().to_list()
    coverages = sorted(frame["oracle_coverage"].unique().to_list())
    fig, axes = panel_grid(len(policies), 4.8, 3.6, 1.2)
    log_x = len(coverages) > 1 and coverages[-1] / coverages[0] > 4
    span = (np.log(coverages[-1]) - np.log(coverages[0])) if log_x else (coverages[-1] - coverages[0])
    dodge_step = 0.025 * (span or 1.0)
    for ax, policy in zip(axes, policies):
        sub = frame.filter(pl.col("policy") == policy)
        truth = sub.filter(pl.col("truth").is_not_null())
        if truth.height:
            t, t_se = float(truth["truth"].mean()), float(truth["truth_se"].fill_null(0.0).mean())
            ax.axhspan(t - 1.96 * t_se, t + 1.96 * t_se, color="#bbbbbb", alpha=0.4, zorder=0)
            ax.axhline(t, color="black", linestyle="--", linewidth=1.2, label=f"truth {t:.3f}")
        for i, est in enumerate(estimators):
            runs = sub.filter(pl.col("estimator") == est).drop_nulls("estimate")
            if not runs.height:
                continue
            colour = policy_colour(i)
            mean = (runs.group_by("oracle_coverage").agg(pl.col("estimate", "ci_lower", "ci_upper").mean())
                    .sort("oracle_coverage"))
            x = mean["oracle_coverage"].to_numpy()
            ax.plot(x, mean["estimate"].to_numpy(), "-", color=colour, linewidth=1.6, label=est)
            if mean.height > 1 and mean["ci_lower"].null_count() == 0:
                ax.fill_between(x, mean["ci_lower"].to_numpy(), mean["ci_upper"].to_numpy(), color=colour,
                                alpha=0.15, linewidth=0)
            offset = (i - (len(estimators) - 1) / 2) * dodge_step
            rx = runs["oracle_coverage"].to_numpy()
            rx = rx * np.exp(offset) if log_x else rx + offset
            ry = runs["estimate"].to_numpy()
            lo = runs["ci_lower"].fill_null(np.nan).to_numpy()
            hi = runs["ci_upper"].fill_null(np.nan).to_numpy()
            ax.errorbar(rx, ry, yerr=np.vstack([ry - lo, hi - ry]), fmt="none", ecolor=colour, alpha=0.6,
                        capsize=2, linewidth=1)
            reliable = runs["reliable"].to_numpy()
            ax.scatter(rx[reliable], ry[reliable], color=colour, s=22, edgecolors="black", linewidths=0.4,
                       zorder=3)
            ax.scatter(rx[~reliable], ry[~reliable], facecolors="white", edgecolors=colour, s=26,
                       linewidths=1.4, zorder=3)
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(coverages, [f"{c:g}" for c in coverages])
        ax.minorticks_off()
        ax.set_title(policy, fontsize=10)
        ax.set_xlabel("oracle coverage (share of logged rows labelled)")
        ax.set_ylabel("policy value (oracle scale, 0-1)")
        ax.grid(color="#e5e5e5", linewidth=0.6)
        ax.legend(fontsize=7, loc="best")
    seeds = frame["seed"].n_unique()
    fig.suptitle("Estimate vs oracle coverage per estimator (hollow = CRITICAL, unreliable)", fontsize=11)
    fig.supxlabel(f"{len(estimators)} estimators x {len(coverages)} coverages x {seeds} seed(s); "
                  f"n = {', '.join(str(n) for n in frame['n_samples'].unique().sort())} logged rows",
                  fontsize=8, color="#444444")
    return save_png(fig, path)


def _num_cell(value, spec: str) -> str:
    return cell(fmt(value, spec, "n/a"), value)


def _accuracy_html(frame: pl.DataFrame) -> str:
    acc = accuracy_table(frame)
    if not acc.height:
        return "<p class='muted'>No ground truth in these results (no oracle labels on fresh draws), " \
               "so bias, RMSE, CI coverage and ranking accuracy cannot be computed.</p>"
    rows = []
    for r in acc.iter_rows(named=True):
        cells = (cell(r["estimator"], r["estimator"], "text") + _num_cell(r["oracle_coverage"], "g")
                 + cell(r["n_seeds"], r["n_seeds"]) + cell(r["n_estimates"], r["n_estimates"])
                 + _num_cell(r["bias"], "+.4f") + _num_cell(r["mean_abs_bias"], ".4f") + _num_cell(r["rmse"], ".4f")
                 + _num_cell(r["ci_coverage"], ".0%") + _num_cell(r["ci_coverage_reliable"], ".0%")
                 + _num_cell(r["mean_ci_width"], ".3f") + _num_cell(r["share_reliable"], ".0%")
                 + _num_cell(r["ranking_accuracy"], ".2f"))
        rows.append((cells, {}))
    headers = ["estimator", "oracle coverage", "seeds", ("estimates", "policy x seed estimates with a known truth"),
               ("bias", "mean(estimate - truth)"), ("mean |bias|", "mean over policies of |bias|"),
               ("RMSE", "sqrt(mean((estimate - truth)^2))"), ("CI coverage", "share of CIs containing the truth"),
               ("CI coverage (reliable)", "the same over estimates not marked CRITICAL"),
               "mean CI width", "share reliable",
               ("ranking accuracy", "share of policy pairs ordered as the truth, mean over seeds")]
    per_policy = accuracy_by_policy(frame)
    prow = []
    for r in per_policy.iter_rows(named=True):
        cells = (cell(r["estimator"], r["estimator"], "text") + _num_cell(r["oracle_coverage"], "g")
                 + cell(r["policy"], r["policy"], "text") + cell(r["n_runs"], r["n_runs"])
                 + _num_cell(r["truth"], ".3f") + _num_cell(r["mean_estimate"], ".3f") + _num_cell(r["bias"], "+.4f")
                 + _num_cell(r["rmse"], ".4f") + _num_cell(r["ci_coverage"], ".0%")
                 + _num_cell(r["mean_ci_width"], ".3f") + cell(r["n_unreliable"], r["n_unreliable"]))
        prow.append((cells, {}))
    pheaders = ["estimator", "oracle coverage", "policy", "runs", "truth", "mean estimate", "bias", "RMSE",
                "CI coverage", "mean CI width", "unreliable runs"]
    return (table("accuracy", headers, rows) + "<h3>Per policy</h3>"
            + table("accuracy-by-policy", pheaders, prow, text_columns=(0, 2)))


def _rows_html(frame: pl.DataFrame) -> str:
    rank = {"GOOD": 0, "WARNING": 1, "CRITICAL": 2}
    rows = []
    for r in frame.iter_rows(named=True):
        ci = "" if r["ci_lower"] is None else f"[{r['ci_lower']:.3f}, {r['ci_upper']:.3f}]"
        cells = (cell(r["estimator"], r["estimator"], "text") + _num_cell(r["oracle_coverage"], "g")
                 + cell(r["seed"], r["seed"]) + cell(r["policy"], r["policy"], "text")
                 + cell(status_badge(r["status"]), rank.get(r["status"], 3), raw_html=True, cls="text")
                 + cell("withheld" if r["estimate"] is None else fmt(r["estimate"]), r["estimate"])
                 + cell(ci, r["ci_lower"]) + _num_cell(r["se"], ".4f") + _num_cell(r["truth"], ".3f")
                 + _num_cell(r["error"], "+.3f")
                 + cell("" if r["in_ci"] is None else ("yes" if r["in_ci"] else "NO"), r["in_ci"]))
        attrs = {"data-status": r["status"]}
        if not r["reliable"]:
            attrs["class"] = "unreliable"
        rows.append((cells, attrs))
    headers = ["estimator", "oracle coverage", "seed", "policy", "status", "estimate", "CI", "SE", "truth",
               "error", "truth in CI"]
    return table("runs", headers, rows, filterable=True, text_columns=(0, 3, 4))


def runs_html(frame: pl.DataFrame, page_dir: Path | None, source_root: Path | None) -> str:
    """One row per analysis (estimates.json): its setting, status counts and a link to its dashboard.

    The link is relative to the page's folder (the page keeps working when the results
    folder is copied or served as a whole); a run analysed without ``--plots`` has none.

    Parameters
    ----------
    frame : polars.DataFrame
        The summary frame.
    page_dir : Path or None
        The page's folder (None: absolute links).
    source_root : Path or None
        The folder the ``source`` paths are relative to (None: no links).

    Returns
    -------
    str
        The analyses table.
    """
    order = {"GOOD": 0, "WARNING": 1, "CRITICAL": 2}
    runs = (frame.group_by("source", maintain_order=True)
            .agg(pl.col("estimator").first(), pl.col("oracle_coverage").first(), pl.col("seed").first(),
                 pl.col("status")).sort("estimator", "oracle_coverage", "seed"))
    rows = []
    for r in runs.iter_rows(named=True):
        counts = " ".join(f"{status_badge(s)} {r['status'].count(s)}" for s in order if s in r["status"])
        link, key = "<span class='muted'>none (analysed without --plots)</span>", ""
        if source_root is not None:
            dashboard = source_root / Path(r["source"]).parent / DASHBOARD_RELPATH
            if dashboard.is_file():
                href = os.path.relpath(dashboard, page_dir) if page_dir is not None else str(dashboard)
                link = f'<a href="{esc(quote(Path(href).as_posix()))}">dashboard</a>'
                key = href
        cells = (cell(r["estimator"], r["estimator"], "text") + _num_cell(r["oracle_coverage"], "g")
                 + cell(r["seed"], r["seed"]) + cell(counts, max(order.get(s, 3) for s in r["status"]),
                                                     raw_html=True, cls="text")
                 + cell(r["source"], r["source"], "text") + cell(link, key, raw_html=True, cls="text"))
        rows.append((cells, {}))
    return table("analyses", ["estimator", "oracle coverage", "seed", "policies by status", "estimates.json",
                              "dashboard"], rows, text_columns=(0, 3, 4, 5))


def cost_html(cost: dict | None) -> str:
    """The run's calls, tokens and cost per stage and provider (the ``cje cost --output`` JSON).

    Parameters
    ----------
    cost : dict or None
        The cost report (None or empty: a note that there is none).

    Returns
    -------
    str
        An HTML fragment.
    """
    if not cost:
        return ("<p class='muted'>No cost report (results/cost.json, written by the workflow's rule cost or "
                "`cje cost --output`): analysis-only runs make no API calls.</p>")
    parts = []
    for what, rows in (("stage", cost.get("by_stage") or []), ("provider", cost.get("by_provider") or [])):
        body = [(cell(r[what], r[what], "text") + cell(f"{r['calls']:,}", r["calls"])
                 + cell(f"{r['errors']:,}", r["errors"]) + cell(f"{r['retries']:,}", r["retries"])
                 + cell(f"{r['prompt_tokens']:,}", r["prompt_tokens"])
                 + cell(f"{r['completion_tokens']:,}", r["completion_tokens"])
                 + _num_cell(r["cost_usd"], ".4f"), {}) for r in rows]
        parts.append(table(f"cost-by-{what}", [what, "calls", "errors", "retries", "prompt tokens",
                                               "completion tokens", "cost USD"], body))
    warnings = "".join(f'<li class="warn">{esc(w)}</li>' for w in cost.get("warnings") or [])
    total = fmt(cost.get("total_cost_usd"), ".4f")
    return (f"<p>Total estimated cost: <b>${total}</b> (provider prices from the config when the stages ran)."
            f"</p>{parts[0]}{parts[1]}" + (f"<ul>{warnings}</ul>" if warnings else ""))


def build_summary_html(frame: pl.DataFrame, figure_png: Path, results_dir: str, page_dir: Path | None = None,
                       source_root: Path | None = None, cost: dict | None = None) -> str:
    """The summary page.

    Accuracy tables (when truth is known), the coverage figure, every run with a link to
    its dashboard, the run's cost, every estimate.

    Parameters
    ----------
    frame : polars.DataFrame
        The summary frame.
    figure_png : Path
        The coverage figure to embed.
    results_dir : str
        The results folder, named in the header.
    page_dir : Path or None, default=None
        The page's folder (for relative dashboard links).
    source_root : Path or None, default=None
        The folder the ``source`` paths are relative to.
    cost : dict or None, default=None
        The ``cje cost`` JSON.

    Returns
    -------
    str
        The HTML document.
    """
    n_files = frame["source"].n_unique()
    body = (f"<section><h2>Accuracy against ground truth</h2>{_accuracy_html(frame)}</section>"
            f"<section><h2>Estimate vs oracle coverage</h2>"
            f"{image_figure(figure_png, 'estimate vs oracle coverage per estimator', COVERAGE_CAPTION)}</section>"
            f"<section><h2>Analyses and their dashboards</h2>{runs_html(frame, page_dir, source_root)}</section>"
            f"<section><h2>What the run cost</h2>{cost_html(cost)}</section>"
            f"<section><h2>Every estimate</h2>{filter_controls()}{_rows_html(frame)}</section>")
    header = [f"{n_files} analyses from {results_dir}: estimators "
              f"{', '.join(frame['estimator'].unique().sort())}; oracle coverages "
              f"{', '.join(f'{c:g}' for c in frame['oracle_coverage'].unique().sort())}; "
              f"seeds {', '.join(str(s) for s in frame['seed'].unique().sort())}"]
    return page("CJE sweep summary", header, body)


def write_summary_html(frame: pl.DataFrame, path: str | Path, results_dir: str | Path,
                       figure_path: str | Path | None = None, source_root: str | Path | None = None,
                       cost: dict | str | Path | None = None) -> Path:
    """Render the figure (to ``figure_path``, or a temporary file) and write the page atomically.

    Parameters
    ----------
    frame : polars.DataFrame
        The summary frame.
    path : str or Path
        The HTML page.
    results_dir : str or Path
        The results folder.
    figure_path : str, Path or None, default=None
        Where to keep the figure (None: a temporary file).
    source_root : str, Path or None, default=None
        The folder the frame's ``source`` paths are relative to (default ``results_dir``
        when it is a folder), used to find each run's dashboard.
    cost : dict, str, Path or None, default=None
        The ``cje cost`` JSON (a dict or its path; default ``{source_root}/cost.json`` when present).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    root = Path(source_root) if source_root is not None else (
        Path(results_dir) if Path(str(results_dir)).is_dir() else None)
    if cost is None and root is not None and (root / "cost.json").is_file():
        cost = root / "cost.json"
    if isinstance(cost, (str, Path)):
        cost = json.loads(Path(cost).read_text())
    with tempfile.TemporaryDirectory(prefix="cje-summary-") as tmp:
        figure = Path(figure_path) if figure_path else Path(tmp) / "estimates_vs_coverage.png"
        plot_estimates_vs_coverage(frame, figure)
        page_dir = path.parent.resolve()
        atomic_write_text(path, build_summary_html(frame, figure, str(results_dir), page_dir,
                                                   root.resolve() if root is not None else None, cost))
    publish_mode(path)
    return path
