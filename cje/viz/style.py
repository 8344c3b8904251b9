"""Shared look of every plot: Okabe-Ito palette, status colours, captions, atomic PNG output.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas
directly (no ``pyplot``), so rendering never touches a global backend or a
display and is safe inside the Snakemake workflow and tests.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cje.atomic import atomic_writer

__all__ = ["OKABE_ITO", "STATUS_COLOURS", "STATUS_MARKERS", "DPI", "policy_colour", "new_figure",
           "save_png", "publish_mode", "config_caption", "fmt"]

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}
# The cycle used for policies / estimators (yellow last: weak on white).
_CYCLE = ["blue", "orange", "bluish_green", "reddish_purple", "sky_blue", "vermillion", "black", "yellow"]
STATUS_COLOURS = {"GOOD": OKABE_ITO["bluish_green"], "WARNING": OKABE_ITO["orange"],
                  "CRITICAL": OKABE_ITO["vermillion"]}
# Shape as well as colour, so status survives greyscale printing and colour-blindness.
STATUS_MARKERS = {"GOOD": "o", "WARNING": "^", "CRITICAL": "X"}
DPI = 120


def policy_colour(index: int) -> str:
    """The ``index``-th colour of the Okabe-Ito cycle (wraps around)."""
    return OKABE_ITO[_CYCLE[index % len(_CYCLE)]]


def new_figure(width: float, height: float) -> Figure:
    """A white Agg-backed figure of ``width`` x ``height`` inches (at :data:`DPI`)."""
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def panel_grid(n_panels: int, panel_width: float, panel_height: float, extra_height: float):
    """A figure with one panel per policy, at most 3 per row; unused panels hidden.

    Returns (figure, the first ``n_panels`` axes in reading order).
    """
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = new_figure(panel_width * ncols, panel_height * nrows + extra_height)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically (temp file in the same folder, then rename); return the path."""
    path = Path(path)
    with atomic_writer(path) as handle:  # the one atomic writer (cje.atomic)
        fig.savefig(handle, format="png", dpi=DPI, facecolor="white")
    return path


def publish_mode(path: str | Path) -> None:
    """Give ``path`` the permissions a plain ``open()`` would (0666 minus umask), not mkstemp's 0600."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def fmt(value: float | None, spec: str = ".3f", missing: str = "n/a") -> str:
    """Format a number that may be None or non-finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def config_caption(payload: dict) -> str:
    """One line naming the configuration behind a plot, from an estimates.json payload.

    e.g. ``estimator calibrated-ips | oracle coverage 0.25 (250 labels) | n = 1000 | seed 0``.
    """
    meta = payload["metadata"]
    coverage = f"oracle coverage {meta['oracle_coverage']:g}"
    used = meta.get("oracle_coverage_used")
    if used is not None and not math.isclose(used, meta["oracle_coverage"]):
        coverage += f" (used {used:g})"
    return (f"estimator {meta['estimator']} | {coverage}, {meta['n_oracle']} labels | "
            f"n = {meta['n_samples']} logged rows | seed {meta['seed']}")
