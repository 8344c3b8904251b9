"""Shared look of every plot and page: Okabe-Ito palette, status colours, contrast, captions, PNG output.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas
directly (no ``pyplot``), so rendering never touches a global backend or a
display and is safe inside the Snakemake workflow and tests.

Contrast (WCAG 2.x, https://www.w3.org/TR/WCAG21/#contrast-minimum): text must
reach 4.5:1 against its background (level AA). The Okabe-Ito status colours
themselves do not on white (green 3.4, orange 2.3, vermillion 3.9), so they are
used for markers, lines and fills only; status *text* (labels, titles, badges)
uses :data:`STATUS_TEXT_COLOURS`, the same hues darkened until every pairing used
reaches 4.5:1 (checked by ``tests/viz/test_accessibility.py`` with
:func:`contrast_ratio`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cje.atomic import atomic_writer

__all__ = ["OKABE_ITO", "STATUS_COLOURS", "STATUS_TEXT_COLOURS", "STATUS_MARKERS", "DPI", "policy_colour",
           "new_figure", "save_png", "publish_mode", "config_caption", "fmt", "relative_luminance",
           "contrast_ratio", "blend", "WCAG_AA_TEXT"]

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}
# The cycle used for policies / estimators (yellow last: weak on white).
_CYCLE = ["blue", "orange", "bluish_green", "reddish_purple", "sky_blue", "vermillion", "black", "yellow"]
STATUS_COLOURS = {"GOOD": OKABE_ITO["bluish_green"], "WARNING": OKABE_ITO["orange"],
                  "CRITICAL": OKABE_ITO["vermillion"]}
# Status text (tick labels, titles, badges with white text): the status hues darkened to >= 4.5:1
# against white and the light backgrounds of the pages (Okabe-Ito green x0.75, orange x0.6, vermillion x0.8).
STATUS_TEXT_COLOURS = {"GOOD": "#007656", "WARNING": "#8A5F00", "CRITICAL": "#AA4B00"}
WCAG_AA_TEXT = 4.5  # minimum contrast ratio of normal-size text, WCAG 2.x success criterion 1.4.3
# Shape as well as colour, so status survives greyscale printing and colour-blindness.
STATUS_MARKERS = {"GOOD": "o", "WARNING": "^", "CRITICAL": "X"}
DPI = 120


def policy_colour(index: int) -> str:
    """The ``index``-th colour of the Okabe-Ito cycle (wraps around).

    Parameters
    ----------
    index : int
        The policy's position.

    Returns
    -------
    str
        A ``#rrggbb`` colour.

    References
    ----------
    Okabe, M., & Ito, K. (2008). Color Universal Design (CUD): how to make figures and
    presentations that are friendly to colorblind people.
    """
    return OKABE_ITO[_CYCLE[index % len(_CYCLE)]]


def new_figure(width: float, height: float) -> Figure:
    """A white Agg-backed figure of ``width`` x ``height`` inches (at :data:`DPI`).

    Parameters
    ----------
    width, height : float
        Size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        A figure with an Agg canvas attached (no pyplot).
    """
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def panel_grid(n_panels: int, panel_width: float, panel_height: float, extra_height: float):
    """A figure with one panel per policy, at most 3 per row; unused panels hidden.

    Parameters
    ----------
    n_panels : int
        Panels (>= 1).
    panel_width, panel_height : float
        Size of one panel in inches.
    extra_height : float
        Inches added for titles and captions.

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure (constrained layout).
    axes : list of matplotlib.axes.Axes
        The first ``n_panels`` axes in reading order.
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
    """Write ``fig`` as PNG atomically (temp file in the same folder, then rename); return the path.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or Path
        The PNG file.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_writer(path) as handle:  # the one atomic writer (cje.atomic)
        fig.savefig(handle, format="png", dpi=DPI, facecolor="white")
    return path


def publish_mode(path: str | Path) -> None:
    """Give ``path`` the permissions a plain ``open()`` would (0666 minus umask), not mkstemp's 0600.

    Parameters
    ----------
    path : str or Path
        An existing file.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _rgb(colour: str) -> tuple[float, float, float]:
    h = colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))


def relative_luminance(colour: str) -> float:
    """WCAG relative luminance of a ``#rrggbb`` / ``#rgb`` colour.

    0.2126 R + 0.7152 G + 0.0722 B of the linearised sRGB channels (c / 12.92 for
    c <= 0.04045, else ((c + 0.055) / 1.055)^2.4).

    Parameters
    ----------
    colour : str
        ``#rrggbb`` or ``#rgb``.

    Returns
    -------
    float
        In [0, 1].

    References
    ----------
    W3C (2018). Web Content Accessibility Guidelines (WCAG) 2.1, "relative luminance".
    """
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in _rgb(colour)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG contrast ratio (L1 + 0.05) / (L2 + 0.05), L1 the lighter luminance; from 1 to 21.

    Parameters
    ----------
    foreground, background : str
        ``#rrggbb`` or ``#rgb`` colours.

    Returns
    -------
    float
        From 1 (no contrast) to 21 (black on white).

    References
    ----------
    W3C (2018). Web Content Accessibility Guidelines (WCAG) 2.1, success criterion 1.4.3.
    """
    a, b = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def blend(foreground: str, background: str, alpha: float) -> str:
    """The opaque colour of ``foreground`` drawn at opacity ``alpha`` over ``background``.

    Parameters
    ----------
    foreground, background : str
        ``#rrggbb`` or ``#rgb`` colours.
    alpha : float
        Opacity of ``foreground``, in [0, 1].

    Returns
    -------
    str
        ``#RRGGBB``.
    """
    mixed = [alpha * f + (1 - alpha) * b for f, b in zip(_rgb(foreground), _rgb(background))]
    return "#" + "".join(f"{round(255 * c):02X}" for c in mixed)


def fmt(value: float | None, spec: str = ".3f", missing: str = "n/a") -> str:
    """Format a number that may be None or non-finite.

    Parameters
    ----------
    value : float or None
        The number.
    spec : str, default='.3f'
        A format spec.
    missing : str, default='n/a'
        The text for None or a non-finite value.

    Returns
    -------
    str
        The formatted number, or ``missing``.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def config_caption(payload: dict) -> str:
    """One line naming the configuration behind a plot, from an estimates.json payload.

    e.g. ``estimator calibrated-ips | oracle coverage 0.25 (250 labels) | n = 1000 | seed 0``.

    Parameters
    ----------
    payload : dict
        An estimates.json payload.

    Returns
    -------
    str
        The caption line.
    """
    meta = payload["metadata"]
    coverage = f"oracle coverage {meta['oracle_coverage']:g}"
    used = meta.get("oracle_coverage_used")
    if used is not None and not math.isclose(used, meta["oracle_coverage"]):
        coverage += f" (used {used:g})"
    return (f"estimator {meta['estimator']} | {coverage}, {meta['n_oracle']} labels | "
            f"n = {meta['n_samples']} logged rows | seed {meta['seed']}")
