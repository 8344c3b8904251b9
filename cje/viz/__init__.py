"""Results people can look at: per-analysis plots and dashboard, and the sweep summary.

``render_analysis_plots(payload, plot_data, out_dir)`` is what ``cje analyze --plots``
calls; ``cje summarize`` (registered by :mod:`cje.cli.summarize`) builds the sweep
summary. This package reads results only (estimates.json payloads and
:class:`cje.results.model.PlotData`); it never imports estimators or snakemake.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from cje.results.model import PlotData

__all__ = ["render_analysis_plots", "PLOT_FILES", "DASHBOARD_FILE", "quiet_matplotlib"]


def quiet_matplotlib() -> None:
    """Keep matplotlib's first-run chatter off stderr (every figure module imports it after this).

    The font cache it builds on first use logs "generated new fontManager" (INFO) and
    "Matplotlib is building the font cache" (WARNING) on ``matplotlib.font_manager``: that
    logger is set to ERROR. When ``MPLCONFIGDIR`` is unset and its default folders
    (``~/.config/matplotlib``, ``~/.cache/matplotlib`` where the font cache lives) cannot be
    written (a read-only or missing HOME, a cluster job), matplotlib would warn and rebuild
    the cache in a new temporary folder on every run: ``MPLCONFIGDIR`` is then set to one
    folder per user under the temporary folder, so the cache is built once and nothing is
    printed. A set ``MPLCONFIGDIR`` is never changed.
    """
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    if os.environ.get("MPLCONFIGDIR"):
        return
    try:
        folders = [Path(os.environ.get(var) or Path.home() / sub) / "matplotlib"
                   for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"))]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        if all(os.access(folder, os.W_OK) for folder in folders):
            return
    except (OSError, RuntimeError):  # RuntimeError: no home directory at all
        pass
    cache = Path(tempfile.gettempdir()) / f"cje-matplotlib-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    cache.mkdir(mode=0o700, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(cache)


quiet_matplotlib()

PLOT_FILES = ("weight_distributions.png", "calibration_curve.png", "policy_estimates.png")
DASHBOARD_FILE = "diagnostics_dashboard.html"


def render_analysis_plots(payload: dict, plot_data: PlotData | None, out_dir: str | Path) -> list[Path]:
    """Write the three PNGs and the self-contained HTML dashboard of one analysis.

    Every file is written atomically.

    Parameters
    ----------
    payload : dict
        The estimates.json payload (``AnalysisOutput.to_dict()``).
    plot_data : PlotData or None
        The analysis arrays (``AnalysisOutput.plot_data`` or ``PlotData.load(plot_data.npz)``).
        When None, only ``policy_estimates.png`` and the dashboard are written
        (the dashboard says the array plots are missing).
    out_dir : str or Path
        Folder to write into (created when missing).

    Returns
    -------
    list of Path
        The written paths: ``weight_distributions.png``, ``calibration_curve.png``,
        ``policy_estimates.png``, ``diagnostics_dashboard.html`` (in that order).
    """
    # matplotlib is imported only when a figure is drawn
    from cje.viz.dashboard import write_dashboard
    from cje.viz.forest import plot_policy_estimates

    # matplotlib is imported only when a figure is drawn
    from cje.viz.plots import plot_calibration_curve, plot_weight_distributions

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plot_data is not None:
        written.append(plot_weight_distributions(payload, plot_data, out_dir / PLOT_FILES[0]))
        written.append(plot_calibration_curve(payload, plot_data, out_dir / PLOT_FILES[1]))
    written.append(plot_policy_estimates(payload, out_dir / PLOT_FILES[2]))
    written.append(write_dashboard(payload, written, out_dir / DASHBOARD_FILE))
    return written
