"""Per-analysis diagnostic plots: importance-weight distributions and the judge->oracle calibration.

Each ``*_figure`` function takes the estimates.json payload (``AnalysisOutput.to_dict()``)
and the arrays in :class:`cje.results.model.PlotData` and returns a matplotlib
:class:`~matplotlib.figure.Figure` (what the API's ``Result.plot_*`` methods return);
each ``plot_*`` function writes that figure as one PNG atomically and returns its
path. The forest plot of the estimates lives in :mod:`cje.viz.forest`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from cje.results.model import PlotData
from cje.viz.style import OKABE_ITO, STATUS_TEXT_COLOURS, config_caption, fmt, new_figure, panel_grid, save_png

__all__ = ["WEIGHT_FLOOR", "reliability_bins", "weight_distributions_figure", "calibration_figure",
           "plot_weight_distributions", "plot_calibration_curve"]

# Weights below this (on the mean-1 scale) are drawn in the lowest bin: a log axis cannot show 0,
# and rows that small carry no weight in any estimate.
WEIGHT_FLOOR = 1e-6
_CAPTION_SIZE = 8


def _caption(fig, payload: dict) -> None:
    fig.supxlabel(config_caption(payload), fontsize=_CAPTION_SIZE, color="#444444")


def _weight_label(kind: str, weights: np.ndarray, diag: dict | None) -> str:
    ess = fmt(None if diag is None else diag.get("ess"), ".1%")
    wmax = fmt(None if diag is None else diag.get("max_weight"), ".3g")
    n_floor = int(np.sum(weights < WEIGHT_FLOOR))
    floor = f"; {n_floor} rows < {WEIGHT_FLOOR:g}" if n_floor else ""
    return f"{kind}: ESS {ess}, max {wmax}{floor}"


def weight_distributions_figure(payload: dict, plot_data: PlotData) -> Figure:
    """Histogram per target policy of the raw and the used importance weights, log-log axes.

    Raw weights are the self-normalised ratios W = n exp(lr) / sum exp(lr) (mean 1);
    used weights are what the estimator averaged with (SIMCal-W calibrated, clipped,
    or none for estimators without weights). The legend gives each set's ESS
    fraction (sum W)^2 / (n sum W^2) and maximum, from ``metadata.diagnostics``.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    plot_data : PlotData
        The analysis arrays.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per target policy.

    References
    ----------
    Kish, L. (1965). Survey Sampling. Wiley (the effective sample size).
    """
    meta = payload["metadata"]
    policies = list(meta["target_policies"])
    fig, axes = panel_grid(len(policies), 4.4, 3.3, 1.0)
    for ax, policy in zip(axes, policies):
        diag = meta["diagnostics"].get(policy, {})
        status = meta["policies"][policy]["status"]
        series = [("raw", plot_data.raw_weights.get(policy), diag.get("weights_raw"), OKABE_ITO["blue"]),
                  (f"used ({meta['estimator']})", plot_data.used_weights.get(policy), diag.get("weights_used"),
                   OKABE_ITO["orange"])]
        series = [(k, np.asarray(w, float), d, c) for k, w, d, c in series if w is not None and len(w)]
        ax.set_title(f"{policy} [{status}]", fontsize=10, color=STATUS_TEXT_COLOURS.get(status, "black"))
        ax.set_xlabel("importance weight W (mean-1 scale, log)")
        ax.set_ylabel("logged rows (log)")
        if not series:
            ax.text(0.5, 0.5, "no importance weights\n(no usable rows)", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        values = np.concatenate([w[np.isfinite(w)] for _, w, _, _ in series])
        positive = values[values > 0]
        lo = max(WEIGHT_FLOOR, float(positive.min()) if positive.size else WEIGHT_FLOOR)
        hi = max(float(values.max()) if values.size else 1.0, lo * 10, 1.5)
        bins = np.logspace(np.log10(lo), np.log10(hi) + 1e-9, 41)
        for i, (kind, w, d, colour) in enumerate(series):
            clipped = np.clip(w[np.isfinite(w)], lo, hi)
            ax.hist(clipped, bins=bins, log=True, color=colour, alpha=0.35 if i == 0 else 1.0,
                    histtype="stepfilled" if i == 0 else "step", linewidth=1.8,
                    label=_weight_label(kind, w, d))
        ax.axvline(1.0, color="#666666", linestyle="--", linewidth=1, label="W = 1 (same as base)")
        ax.set_xscale("log")
        ax.set_ylim(0.7, ax.get_ylim()[1] * 30)  # headroom for the legend on the log axis
        if policy not in plot_data.used_weights:
            ax.text(0.02, 0.97, f"{meta['estimator']} uses no weights", transform=ax.transAxes,
                    fontsize=8, va="top")
        ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    fig.suptitle("Importance-weight distributions per target policy: raw vs used by the estimator",
                 fontsize=11)
    _caption(fig, payload)
    return fig


def plot_weight_distributions(payload: dict, plot_data: PlotData, path: str | Path) -> Path:
    """Write :func:`weight_distributions_figure` as a PNG at ``path`` (atomically); return the path.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    plot_data : PlotData
        The analysis arrays.
    path : str or Path
        The PNG.

    Returns
    -------
    Path
        ``path``.
    """
    return save_png(weight_distributions_figure(payload, plot_data), path)


def reliability_bins(predicted: np.ndarray, observed: np.ndarray, n_bins: int = 10) -> pl.DataFrame:
    """Bin rows by predicted value (quantile bins; tied predictions never split) and summarise.

    Rows where either input is non-finite are ignored.

    Parameters
    ----------
    predicted : ndarray
        Out-of-fold calibrated rewards f^(-k)(S) of the labelled rows.
    observed : ndarray
        Their oracle labels Y.
    n_bins : int, default=10
        Target number of quantile bins (fewer when predictions are tied).

    Returns
    -------
    polars.DataFrame
        One row per non-empty bin, sorted by ``mean_predicted``: ``n``,
        ``mean_predicted``, ``mean_observed``, ``se_observed`` = sd(Y)/sqrt(n) (null for n < 2).
    """
    predicted = np.asarray(predicted, float)
    observed = np.asarray(observed, float)
    keep = np.isfinite(predicted) & np.isfinite(observed)
    predicted, observed = predicted[keep], observed[keep]
    schema = {"n": pl.Int64, "mean_predicted": pl.Float64, "mean_observed": pl.Float64,
              "se_observed": pl.Float64}
    if predicted.size == 0:
        return pl.DataFrame(schema=schema)
    edges = np.unique(np.quantile(predicted, np.linspace(0, 1, n_bins + 1)))
    bin_id = np.searchsorted(edges[1:-1], predicted, side="right") if edges.size > 2 else np.zeros(
        predicted.size, int)
    frame = pl.DataFrame({"bin": bin_id, "p": predicted, "y": observed})
    out = (frame.group_by("bin")
           .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("p").mean().alias("mean_predicted"),
                pl.col("y").mean().alias("mean_observed"), pl.col("y").std(ddof=1).alias("sd"))
           .with_columns((pl.col("sd") / pl.col("n").cast(pl.Float64).sqrt()).alias("se_observed"))
           .sort("mean_predicted").select(list(schema)))
    return out.cast(schema)


def calibration_figure(payload: dict, plot_data: PlotData) -> Figure:
    """Judge -> oracle calibration: labelled rows, isotonic fit, out-of-fold points, reliability bins.

    Left: oracle label Y against judge score S for the rows the analysis used
    (a small fixed-seed horizontal jitter separates tied judge scores), the
    full-data isotonic fit f on a grid, and the out-of-fold predictions
    f^(-k)(S) of the same rows. Right: reliability diagram of the out-of-fold
    predictions (quantile bins, mean Y +- 1.96 SE, the diagonal is perfect calibration).

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    plot_data : PlotData
        The analysis arrays.

    Returns
    -------
    matplotlib.figure.Figure
        The two panels.
    """
    meta = payload["metadata"]
    cal = meta["calibration"]
    judge = np.asarray(plot_data.judge_scores, float)
    oracle = np.asarray(plot_data.oracle_labels, float)
    oof = np.asarray(plot_data.calibrated_oof, float)
    labelled = np.isfinite(oracle) & np.isfinite(judge)
    fig = new_figure(11.0, 4.8)
    fig.set_layout_engine("constrained")
    left, right = fig.subplots(1, 2)
    jitter = np.random.default_rng(0).uniform(-0.006, 0.006, int(labelled.sum()))
    left.scatter(judge[labelled] + jitter, oracle[labelled], s=10, alpha=0.3, color=OKABE_ITO["sky_blue"],
                 edgecolors="none", label=f"labelled rows (n = {int(labelled.sum())}, jittered ±0.006)")
    has_oof = labelled & np.isfinite(oof)
    if has_oof.any():
        left.scatter(judge[has_oof], oof[has_oof], s=14, marker="D", color=OKABE_ITO["orange"], alpha=0.6,
                     edgecolors="none", label="out-of-fold fit f$^{(-k)}$(S) at those rows")
    left.plot(plot_data.calibration_grid, plot_data.calibration_curve, color=OKABE_ITO["blue"], linewidth=2.2,
              drawstyle="steps-post", label=f"calibration f ({cal['mode']}, all labels)")
    left.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="identity (judge = oracle)")
    left.set_xlim(-0.03, 1.03)
    left.set_ylim(-0.03, 1.03)
    left.set_xlabel("judge score S (0-1)")
    left.set_ylabel("oracle label Y (0-1)")
    left.set_title("Judge -> oracle calibration", fontsize=10)
    left.legend(fontsize=7, loc="upper left")
    bins = reliability_bins(oof[labelled], oracle[labelled])
    right.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect calibration")
    if bins.height:
        se = bins["se_observed"].fill_null(0.0).fill_nan(0.0).to_numpy()
        x, y, n = (bins[c].to_numpy() for c in ("mean_predicted", "mean_observed", "n"))
        right.errorbar(x, y, yerr=1.96 * se, fmt="none", ecolor=OKABE_ITO["vermillion"], capsize=3,
                       label="bin mean Y ± 1.96 SE (quantile bins of f$^{(-k)}$)")
        right.scatter(x, y, s=12 + 150 * n / n.max(), color=OKABE_ITO["vermillion"], edgecolors="black",
                      linewidths=0.5, zorder=3, label=f"bin (area ∝ rows; {n.min()}-{n.max()} per bin)")
        lo = max(0.0, min(bins["mean_predicted"].min(), bins["mean_observed"].min()) - 0.1)
        right.set_xlim(lo, 1.02)
        right.set_ylim(lo, 1.02)
    else:
        right.text(0.5, 0.5, "no out-of-fold predictions", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel("mean out-of-fold calibrated reward f$^{(-k)}$(S) in bin (0-1)")
    right.set_ylabel("mean oracle label Y in bin (0-1)")
    right.set_title(f"Reliability: OOF RMSE {fmt(cal.get('oof_rmse'))}, OOF R² {fmt(cal.get('oof_r2'))}",
                    fontsize=10)
    right.legend(fontsize=7, loc="upper left")
    fig.suptitle("Calibration of the judge to the oracle (base-policy logged rows)", fontsize=11)
    _caption(fig, payload)
    return fig


def plot_calibration_curve(payload: dict, plot_data: PlotData, path: str | Path) -> Path:
    """Write :func:`calibration_figure` as a PNG at ``path`` (atomically); return the path.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.
    plot_data : PlotData
        The analysis arrays.
    path : str or Path
        The PNG.

    Returns
    -------
    Path
        ``path``.
    """
    return save_png(calibration_figure(payload, plot_data), path)
