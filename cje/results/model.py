"""Typed analysis results and their export: estimates.json, estimates.csv, plot_data.npz.

The JSON layout is defined once, here, and validated against
``cje/results/estimates.schema.json`` before it is written. Non-finite floats
are written as ``null`` so every file is strict JSON and round-trips.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cje.atomic import atomic_write_bytes
from cje.results.decision import comparisons_vs_base

__all__ = ["PolicyResult", "AnalysisOutput", "PlotData", "to_jsonable", "load_schema",
           "validate_estimates", "CSV_COLUMNS", "CSV_TYPES", "estimate_rows"]

SCHEMA_PATH = Path(__file__).parent / "estimates.schema.json"
# estimates.csv and the API's ``Result.estimates`` frame: one row per target policy (docs/api.md,
# "Columns"). ``ess_raw`` / ``max_weight_raw``: the raw self-normalised importance weights;
# ``ess_used`` / ``max_weight_used``: the weights the estimator averaged with (SIMCal-W calibrated for
# calibrated-ips, clipped for raw-ips, the correction weights of DR; empty for direct and naive).
# The ``*_vs_base`` columns are the paired comparison with the base policy from metadata.comparisons.
CSV_COLUMNS = ["policy", "estimate", "se", "ci_lower", "ci_upper", "level", "df", "se_without_oua",
               "oracle_variance", "diff_vs_base", "diff_vs_base_ci_lower", "diff_vs_base_ci_upper",
               "p_value_vs_base", "status", "reliable", "ess_raw", "ess_used", "max_weight_raw",
               "max_weight_used", "n_used", "n_dropped"]
CSV_TYPES = {"policy": "str", "status": "str", "reliable": "bool", "n_used": "int", "n_dropped": "int",
             **{c: "float" for c in CSV_COLUMNS
                if c not in ("policy", "status", "reliable", "n_used", "n_dropped")}}


def to_jsonable(value: Any) -> Any:
    """Recursively convert numpy scalars/arrays and non-finite floats (-> None) for strict JSON.

    Parameters
    ----------
    value : object
        A dict, list, tuple, numpy array or scalar, nested to any depth.

    Returns
    -------
    object
        The same structure with dict keys as str, arrays as lists, numpy scalars as Python
        scalars and NaN / +-inf as None.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


@dataclass
class PolicyResult:
    """One target policy's result (the ``metadata.policies[name]`` block).

    Parameters
    ----------
    estimate, se, ci_lower, ci_upper : float or None
        The point estimate, its standard error (with OUA) and the interval.
    se_without_oua : float or None
        The standard error without the oracle-uncertainty part.
    oracle_variance : float or None
        The OUA jackknife variance.
    df : float or None
        Degrees of freedom of the Student-t interval.
    ess : float or None
        ESS fraction of the weights the estimate averages with (SIMCal-W for calibrated-ips,
        clipped for raw-ips, the correction weights of DR); the raw weights' ESS when it uses none.
    max_weight : float or None
        Largest of those weights.
    status : str
        GOOD / WARNING / CRITICAL.
    reliable : bool
        False for a CRITICAL policy (its estimate is still reported, or withheld with
        ``--refuse-unreliable``).
    reasons : list of str
        Why the status is what it is.
    n_used : int
        Rows the estimate averages over.
    n_dropped_by_reason : dict of str to int
        Rows dropped for this policy, by reason.
    assumptions : list of dict
        One entry per assumption the estimate rests on, {"id", "statement",
        "status" (PASS / FAIL / UNTESTED / DESIGN), "evidence"} (:func:`cje.checks.status.assumption_ledger`).
    checks : list of dict
        The disagreement checks run for the policy (:func:`cje.checks.audits.disagreement`).
    details : dict
        Estimator-specific numbers.
    """

    estimate: float | None
    se: float | None
    ci_lower: float | None
    ci_upper: float | None
    se_without_oua: float | None
    oracle_variance: float | None
    df: float | None
    ess: float | None
    max_weight: float | None
    status: str
    reliable: bool
    reasons: list[str]
    n_used: int
    n_dropped_by_reason: dict[str, int]
    assumptions: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)


@dataclass
class PlotData:
    """Arrays the plots need (written to plot_data.npz; never to JSON).

    Parameters
    ----------
    judge_scores : ndarray
        Judge scores of the logged rows.
    oracle_labels : ndarray
        Oracle labels (NaN = not used by the analysis).
    calibrated : ndarray
        f(S).
    calibrated_oof : ndarray
        f^(oof)(S).
    calibration_grid, calibration_curve : ndarray
        f on a grid.
    raw_weights, used_weights : dict of str to ndarray
        Per policy (used_weights empty when the estimator uses none).
    fresh_judge_scores : dict of str to ndarray
        Per policy, judge scores of its fresh draws.
    fresh_truth_labels : dict of str to ndarray
        Per policy, ground-truth oracle labels of its fresh draws (NaN = none).
    """

    judge_scores: np.ndarray
    oracle_labels: np.ndarray
    calibrated: np.ndarray
    calibrated_oof: np.ndarray
    calibration_grid: np.ndarray
    calibration_curve: np.ndarray
    raw_weights: dict[str, np.ndarray] = field(default_factory=dict)
    used_weights: dict[str, np.ndarray] = field(default_factory=dict)
    fresh_judge_scores: dict[str, np.ndarray] = field(default_factory=dict)
    fresh_truth_labels: dict[str, np.ndarray] = field(default_factory=dict)

    _PER_POLICY = ("raw_weights", "used_weights", "fresh_judge_scores", "fresh_truth_labels")
    _ARRAYS = ("judge_scores", "oracle_labels", "calibrated", "calibrated_oof", "calibration_grid",
               "calibration_curve")

    def save_to(self, handle: Any) -> None:
        """Write the arrays as a compressed ``.npz`` to a binary handle (per-policy arrays as ``{group}__{policy}``).

        Parameters
        ----------
        handle : file-like
            A binary handle open for writing.
        """
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        for group in self._PER_POLICY:
            for policy, values in getattr(self, group).items():
                arrays[f"{group}__{policy}"] = values
        np.savez_compressed(handle, **arrays)

    def save(self, path: str | Path) -> None:
        """Write ``plot_data.npz`` on its own with the one atomic writer (unique temp, fsync, rename).

        An analysis's outputs are published as a set by :func:`cje.results.files.publish_analysis`.

        Parameters
        ----------
        path : str or Path
            The file to write.
        """
        buffer = io.BytesIO()
        self.save_to(buffer)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "PlotData":
        """Read arrays written by :meth:`save` or :meth:`save_to`.

        Parameters
        ----------
        path : str or Path
            A ``plot_data.npz`` file.

        Returns
        -------
        PlotData
        """
        with np.load(path) as npz:
            kwargs: dict[str, Any] = {name: npz[name] for name in cls._ARRAYS}
            for group in cls._PER_POLICY:
                kwargs[group] = {key.split("__", 1)[1]: npz[key] for key in npz.files
                                 if key.startswith(group + "__")}
        return cls(**kwargs)


@dataclass
class AnalysisOutput:
    """The whole analysis: per-policy results plus run metadata.

    Parameters
    ----------
    estimator : str
        The estimator's registry name.
    target_policies : list of str
        The target policies, in output order.
    policies : dict of str to PolicyResult
        Each target's result.
    metadata : dict
        Run metadata (written to ``metadata`` of estimates.json).
    plot_data : PlotData or None, default=None
        The arrays of the plots (not part of estimates.json).
    """

    estimator: str
    target_policies: list[str]
    policies: dict[str, PolicyResult]
    metadata: dict
    plot_data: PlotData | None = None

    def to_dict(self) -> dict:
        """The estimates.json payload (strict-JSON-able).

        Returns
        -------
        dict
            ``estimates``, ``standard_errors``, ``confidence_intervals`` (one entry per target, in
            order) and ``metadata`` (with ``target_policies``, ``estimator`` and ``policies``).
        """
        pols = [self.policies[p] for p in self.target_policies]
        meta = dict(self.metadata)
        meta["target_policies"] = list(self.target_policies)
        meta["estimator"] = self.estimator
        meta["policies"] = {p: asdict(self.policies[p]) for p in self.target_policies}
        return to_jsonable({
            "estimates": [r.estimate for r in pols],
            "standard_errors": [r.se for r in pols],
            "confidence_intervals": [[r.ci_lower, r.ci_upper] for r in pols],
            "metadata": meta,
        })

    def to_csv(self) -> str:
        """estimates.csv: :data:`CSV_COLUMNS`, one row per target policy (:func:`estimate_rows`).

        Returns
        -------
        str
            The CSV text; None is written as an empty cell and booleans as ``true``/``false``.
        """
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in estimate_rows(self.to_dict()):
            writer.writerow(["" if v is None else (str(v).lower() if isinstance(v, bool) else v)
                             for v in (row[c] for c in CSV_COLUMNS)])
        return out.getvalue()

    @classmethod
    def from_dict(cls, payload: dict) -> "AnalysisOutput":
        """Rebuild from an estimates.json payload (plot data is not part of it).

        Parameters
        ----------
        payload : dict
            An estimates.json payload (:meth:`to_dict`).

        Returns
        -------
        AnalysisOutput
        """
        meta = dict(payload["metadata"])
        targets = list(meta.pop("target_policies"))
        estimator = meta.pop("estimator")
        policies = {name: PolicyResult(**block) for name, block in meta.pop("policies").items()}
        return cls(estimator=estimator, target_policies=targets, policies=policies, metadata=meta)


def estimate_rows(payload: dict) -> list[dict]:
    """One dict per target policy with the :data:`CSV_COLUMNS` (None = not available), from a payload.

    Everything is read from the estimates.json payload: the policy block, its weight
    diagnostics (``metadata.diagnostics[p].weights_raw/weights_used``) and the paired
    comparison with the base (``metadata.comparisons``, via :mod:`cje.results.decision`).

    Parameters
    ----------
    payload : dict
        An estimates.json payload.

    Returns
    -------
    list of dict
        One row per target policy; non-finite floats are None.
    """
    meta = payload["metadata"]
    level = (meta.get("inference") or {}).get("level", 0.95)
    vs_base = comparisons_vs_base(payload)
    rows = []
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        diag = meta.get("diagnostics", {}).get(name) or {}
        raw, used = diag.get("weights_raw") or {}, diag.get("weights_used") or {}
        c = vs_base.get(name)
        row = {"policy": name, "estimate": r["estimate"], "se": r["se"], "ci_lower": r["ci_lower"],
               "ci_upper": r["ci_upper"], "level": level, "df": r.get("df"),
               "se_without_oua": r.get("se_without_oua"), "oracle_variance": r.get("oracle_variance"),
               "diff_vs_base": None if c is None else c.difference,
               "diff_vs_base_ci_lower": None if c is None else c.ci_lower,
               "diff_vs_base_ci_upper": None if c is None else c.ci_upper,
               "p_value_vs_base": None if c is None else c.p_value,
               "status": r["status"], "reliable": bool(r["reliable"]),
               "ess_raw": raw.get("ess"), "ess_used": used.get("ess"),
               "max_weight_raw": raw.get("max_weight"), "max_weight_used": used.get("max_weight"),
               "n_used": r["n_used"], "n_dropped": int(sum((r.get("n_dropped_by_reason") or {}).values()))}
        rows.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
    return rows


def load_schema() -> dict:
    """The estimates.json JSON schema (``cje/results/estimates.schema.json``).

    Returns
    -------
    dict
        The parsed schema.
    """
    return json.loads(SCHEMA_PATH.read_text())


def validate_estimates(payload: dict) -> None:
    """Raise ``jsonschema.ValidationError`` when ``payload`` breaks the estimates.json schema.

    Parameters
    ----------
    payload : dict
        An estimates.json payload.

    Raises
    ------
    jsonschema.ValidationError
        The payload breaks the schema.
    """
    # jsonschema costs start-up time; imported when something is validated
    import jsonschema

    error = jsonschema.exceptions.best_match(_estimates_validator().iter_errors(payload))
    if error is not None:  # what jsonschema.validate raises, without checking the schema on every call
        raise error


@functools.lru_cache(maxsize=1)
def _estimates_validator():
    """The estimates.json validator, built (and the schema checked) once per process: checking the
    schema took ~150 ms, on every payload a reader (cje summarize, cje.load_result) validated."""
    # jsonschema costs start-up time; imported when something is validated
    import jsonschema

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


