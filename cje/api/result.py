"""The result of :func:`cje.analyze`: estimates as a DataFrame, comparisons, the decision, plots, files.

A :class:`Result` wraps one :class:`cje.results.model.AnalysisOutput`; every number it
shows comes from the estimates.json payload (``AnalysisOutput.to_dict()``):
``estimates`` is the estimates.csv table (:func:`cje.results.model.estimate_rows`),
``compare`` and ``best_policy`` read ``metadata.comparisons``
(:mod:`cje.results.decision`), the plots are the :mod:`cje.viz` figures and ``write``
produces the files ``cje analyze`` writes.
"""

from __future__ import annotations

import zipfile
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cje.errors import InputError
from cje.results.decision import BestPolicy, Comparison, best_policy, find_comparison, withheld_policies
from cje.results.files import current_set, publish_analysis, read_estimates
from cje.results.model import CSV_COLUMNS, CSV_TYPES, AnalysisOutput, PlotData, estimate_rows
from cje.viz import render_analysis_plots
from cje.viz.text import format_summary

if TYPE_CHECKING:  # imported lazily at run time (polars / matplotlib cost start-up)
    import polars as pl
    from matplotlib.figure import Figure

__all__ = ["Result", "load_result"]


class Result:
    """One analysis, for people and notebooks.

    Attributes and methods: ``estimates`` (polars DataFrame, the estimates.csv columns),
    ``compare(a, b)``, ``best_policy()``, ``withheld``, ``refused``, ``summary()``,
    ``plot_estimates()`` / ``plot_weights()`` / ``plot_calibration()`` (matplotlib
    figures), ``write(dir, plots=False)``, ``to_dict()`` (the estimates.json payload),
    ``metadata``, ``analysis`` (the underlying :class:`~cje.results.model.AnalysisOutput`).

    Parameters
    ----------
    analysis : AnalysisOutput
        The analysis to wrap.
    refuse_unreliable : bool, default=False
        Whether unreliable estimates were withheld (``--refuse-unreliable``).
    dashboard : Path or None, default=None
        The dashboard file, when written (set by ``write(..., plots=True)``).
    """

    def __init__(self, analysis: AnalysisOutput, refuse_unreliable: bool = False,
                 dashboard: Path | None = None):
        self.analysis = analysis
        self.refuse_unreliable = refuse_unreliable
        self.dashboard = dashboard  # set by write(..., plots=True)

    # --- numbers -------------------------------------------------------------
    @cached_property
    def payload(self) -> dict:
        """The estimates.json payload (computed once)."""
        return self.analysis.to_dict()

    def to_dict(self) -> dict:
        """The estimates.json payload.

        Returns
        -------
        dict
            The strict-JSON payload (computed once).
        """
        return self.payload

    @property
    def metadata(self) -> dict:
        """The ``metadata`` block of the estimates.json payload."""
        return self.payload["metadata"]

    @property
    def estimator(self) -> str:
        """The estimator's registry name."""
        return self.analysis.estimator

    @property
    def policies(self) -> list[str]:
        """Target policies in output order."""
        return list(self.analysis.target_policies)

    @property
    def level(self) -> float:
        """The confidence level of the intervals (0.95 when the payload does not say)."""
        return float((self.metadata.get("inference") or {}).get("level", 0.95))

    @property
    def estimates(self) -> "pl.DataFrame":
        """One row per target policy; columns as in estimates.csv (docs/api.md, "Columns")."""
        import polars as pl

        dtypes = {"str": pl.String, "float": pl.Float64, "bool": pl.Boolean, "int": pl.Int64}
        schema = {c: dtypes[CSV_TYPES[c]] for c in CSV_COLUMNS}
        return pl.DataFrame(estimate_rows(self.payload), schema=schema, orient="row")

    @property
    def comparisons(self) -> "pl.DataFrame":
        """Every paired comparison of the analysis (``metadata.comparisons``), one row per pair."""
        import polars as pl

        rows = self.metadata.get("comparisons") or []
        cols = ["policy_a", "policy_b", "difference", "se", "ci_lower", "ci_upper", "df", "p_value"]
        return pl.DataFrame([{c: r.get(c) for c in cols} for r in rows],
                            schema={c: (pl.String if c.startswith("policy") else pl.Float64) for c in cols})

    def compare(self, a: str, b: str = "base") -> Comparison:
        """psi_a - psi_b: paired difference, SE, CI at the analysis level, p-value (``'base'`` = logging policy).

        Read from ``metadata.comparisons`` (difference of the aligned influence
        functions plus the oracle-uncertainty jackknife of the difference).

        Parameters
        ----------
        a : str
            A policy.
        b : str, default='base'
            The policy it is compared with.

        Returns
        -------
        Comparison
            The paired comparison psi_a - psi_b.

        Raises
        ------
        KeyError
            A policy without an estimate or an unknown name.
        ValueError
            A policy whose estimate was withheld.
        """
        for name in (a, b):
            if name in self.withheld:
                raise ValueError(f"the estimate of '{name}' was withheld (--refuse-unreliable or a failed "
                                 "estimate), so it is not compared")
        return find_comparison(self.payload, a, b)

    def best_policy(self, include_base: bool = True) -> BestPolicy:
        """The best reliable candidate and whether it is resolved (:func:`cje.results.decision.best_policy`).

        Parameters
        ----------
        include_base : bool, default=True
            Count the base policy's on-policy estimate as a candidate.

        Returns
        -------
        BestPolicy
            The best candidate and whether it is resolved.
        """
        return best_policy(self.payload, include_base=include_base)

    @property
    def withheld(self) -> list[str]:
        """Target policies whose estimate is null in the output."""
        return withheld_policies(self.payload)

    @property
    def refused(self) -> bool:
        """True when ``refuse_unreliable`` withheld at least one estimate (``cje analyze`` exits 3)."""
        return self.refuse_unreliable and bool(self.withheld)

    # --- text, HTML, plots ---------------------------------------------------
    def summary(self) -> str:
        """The decision-first text ``cje analyze`` prints (:func:`cje.viz.text.format_summary`).

        Returns
        -------
        str
            The terminal summary.
        """

        return format_summary(self.payload, dashboard=self.dashboard)

    def __repr__(self) -> str:
        best = self.best_policy()
        return (f"<cje.Result {self.estimator}, {len(self.policies)} target policies, "
                f"n={self.metadata['n_samples']}, best: {best.policy}"
                f"{' (resolved)' if best.resolved else ' (not resolved)'}>")

    def _repr_html_(self) -> str:
        # matplotlib is imported only when a figure is drawn
        from cje.viz.notebook import result_html

        return result_html(self.payload)

    def plot_estimates(self) -> "Figure":
        """Forest plot of the estimates and CIs (the dashboard's ``policy_estimates.png``).

        Returns
        -------
        matplotlib.figure.Figure
            The forest plot.
        """
        # matplotlib is imported only when a figure is drawn
        from cje.viz.forest import policy_estimates_figure

        return policy_estimates_figure(self.payload)

    def plot_weights(self) -> "Figure":
        """Raw vs used importance-weight histograms per policy (``weight_distributions.png``).

        Returns
        -------
        matplotlib.figure.Figure
            The weight histograms.

        Raises
        ------
        ValueError
            The result has no plot data (loaded without plot_data.npz).
        """
        # matplotlib is imported only when a figure is drawn
        from cje.viz.plots import weight_distributions_figure

        return weight_distributions_figure(self.payload, self._plot_data())

    def plot_calibration(self) -> "Figure":
        """Judge -> oracle calibration and reliability diagram (``calibration_curve.png``).

        Returns
        -------
        matplotlib.figure.Figure
            The calibration plot.

        Raises
        ------
        ValueError
            The result has no plot data (loaded without plot_data.npz).
        """
        # matplotlib is imported only when a figure is drawn
        from cje.viz.plots import calibration_figure

        return calibration_figure(self.payload, self._plot_data())

    def _plot_data(self) -> PlotData:
        if self.analysis.plot_data is None:
            raise ValueError("this result has no plot data (loaded without plot_data.npz)")
        return self.analysis.plot_data

    # --- files ---------------------------------------------------------------
    def write(self, output_dir: str | Path, plots: bool = False) -> dict[str, Path]:
        """Write what ``cje analyze --output-dir output_dir [--plots]`` writes; return the paths.

        Parameters
        ----------
        output_dir : str or Path
            The output folder (one published set, :func:`cje.results.files.publish_analysis`).
        plots : bool, default=False
            Also write ``plots/`` (the PNGs and the dashboard).

        Returns
        -------
        dict
            Keys: ``json``, ``csv``, ``plot_data`` and with ``plots`` also ``plots`` (the
            PNGs) and ``dashboard`` (``plots/diagnostics_dashboard.html``).

        Raises
        ------
        OutputError
            The folder cannot be written.
        NullEstimateError
            A target has no finite estimate and was not withheld.
        """
        paths: dict = dict(publish_analysis(self.analysis, output_dir,  # one set, cje.results.files
                                            render=render_analysis_plots if plots else None,
                                            refuse_unreliable=self.refuse_unreliable))
        if plots:
            self.dashboard = paths["dashboard"]
        return paths


def load_result(path: str | Path) -> Result:
    """A :class:`Result` from an estimates.json (or the folder holding it).

    ``plot_data.npz`` beside it is loaded too when present (needed by ``plot_weights`` /
    ``plot_calibration``), from the same published set as estimates.json
    (:func:`cje.results.files.current_set`: never a set older than the published one).

    Parameters
    ----------
    path : str or Path
        An estimates.json file, or its folder.

    Returns
    -------
    Result
        The result, with its plot data and dashboard when present.

    Raises
    ------
    FileNotFoundError
        No estimates.json there.
    InputError
        The file is not an estimates.json (not JSON, such as an estimates.csv; not UTF-8),
        or the plot_data.npz of its set cannot be read; one line naming the file.
    jsonschema.ValidationError
        The file breaks the estimates.json schema.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "estimates.json"
    analysis = AnalysisOutput.from_dict(read_estimates(path))
    published = current_set(path.parent)  # the same published set as estimates.json
    npz = published["plot_data.npz"]
    if npz is not None:
        try:
            analysis.plot_data = PlotData.load(npz)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # not an .npz cje wrote
            raise InputError(f"not a plot_data.npz written by cje ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})",
                             path=str(path.parent / "plot_data.npz")) from None
    # the dashboard where it is published, and only when the published set has plots
    dashboard = path.parent / "plots" / "diagnostics_dashboard.html"
    return Result(analysis, dashboard=dashboard if published["plots"] is not None and dashboard.is_file() else None)
