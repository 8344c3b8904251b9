"""User data for :func:`cje.analyze`: paths or DataFrames, any field names, any judge scale.

Everything ends in the one validating loader (:func:`cje.data.loaders.load_logged_data`,
:func:`cje.data.loaders.load_fresh_draws`), so a DataFrame is checked exactly like a file:

* a path with the standard field names is handed to the loader untouched (the
  same bytes, the same errors, the same numbers as ``cje analyze``);
* otherwise (a polars or pandas DataFrame, or a path with renamed fields or a
  judge scale to convert) the rows are brought to the standard layout
  (``metadata`` fields lifted to the top level, mapped columns renamed, scales
  converted) and written as JSONL into a private temporary folder that the
  loader reads. Its errors are re-labelled to point at the user's data: the
  original file and line, or the DataFrame and its 0-based row, and the user's
  column name.

Rescaling: ``judge_scale=(lo, hi)`` maps S to (S - lo) / (hi - lo); a value
outside [lo, hi] is an error naming the row. ``oracle_scale`` does the same for
the oracle label. pandas frames are converted column by column without pyarrow;
pandas' missing values (NaN, None, NA) become nulls.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cje.data.jsonl import nonblank_line_numbers
from cje.data.loaders import (FreshDraws, LoggedData, fresh_draw_files, load_fresh_draws, load_fresh_draws_dir,
                              load_logged_data)
from cje.data.parquet import is_parquet
from cje.data.tables import read_frame
from cje.errors import ConfigError, InputError

__all__ = ["FieldMap", "as_polars", "load_logged", "load_fresh"]


@dataclass(frozen=True)
class FieldMap:
    """Where the standard fields are in the user's data, and the scales to convert.

    Parameters
    ----------
    judge, oracle, prompt_id, base_logprob : str
        Column names of judge_score, oracle_label, prompt_id and base_policy_logprob.
    target_logprobs : dict or None, default=None
        {policy: column} when each target's log-prob is its own column
        (instead of the ``target_policy_logprobs`` object).
    policy : str, default='policy'
        The policy column of a long fresh-draws frame.
    judge_scale, oracle_scale : (float, float) or None, default=None
        (lo, hi) of the user's scale, None = already [0, 1].
    """

    judge: str = "judge_score"
    oracle: str = "oracle_label"
    prompt_id: str = "prompt_id"
    base_logprob: str = "base_policy_logprob"
    target_logprobs: dict | None = None
    policy: str = "policy"
    judge_scale: tuple[float, float] | None = None
    oracle_scale: tuple[float, float] | None = None

    @property
    def renames(self) -> dict[str, str]:
        """{user column: standard name} for the columns that differ."""
        pairs = {self.judge: "judge_score", self.oracle: "oracle_label", self.prompt_id: "prompt_id",
                 self.base_logprob: "base_policy_logprob"}
        return {user: std for user, std in pairs.items() if user != std}

    @property
    def is_standard(self) -> bool:
        """True when no column is renamed, no target log-prob column is mapped and no scale is converted."""
        return not self.renames and self.target_logprobs is None and self.judge_scale is None \
            and self.oracle_scale is None

    def user_name(self, field: str | None) -> str | None:
        """The user's name of a standard field (for error messages).

        Parameters
        ----------
        field : str or None
            A standard field name.

        Returns
        -------
        str or None
            The user's column name, or ``field`` itself when it is not renamed.
        """
        back = {std: user for user, std in self.renames.items()}
        return back.get(field, field)


def as_polars(frame: Any) -> pl.DataFrame | None:
    """A polars DataFrame from a polars or pandas DataFrame; None for anything else.

    pandas frames are converted column by column without pyarrow; pandas' missing
    values (NaN, None, NA) become nulls.

    Parameters
    ----------
    frame : object
        A polars or pandas DataFrame, or anything else.

    Returns
    -------
    polars.DataFrame or None
        The frame, or None when ``frame`` is not a DataFrame.
    """
    if isinstance(frame, pl.DataFrame):
        return frame
    if type(frame).__module__.split(".")[0] == "pandas" and hasattr(frame, "columns"):
        columns = []
        for name in frame.columns:
            col = frame[name]
            if getattr(col.dtype, "kind", "O") in "fiub" and type(col.dtype).__module__.startswith("numpy"):
                series = pl.Series(str(name), col.to_numpy())
                if series.dtype.is_float():
                    series = series.fill_nan(None)
            else:
                values = col.astype(object).where(col.notna(), None).tolist()
                series = pl.Series(str(name), values, strict=False)
            columns.append(series)
        return pl.DataFrame(columns)
    return None


def _check_scale(scale, option: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ConfigError(f"must be a pair (low, high), got {scale!r}", key=option) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ConfigError(f"must be a pair (low, high) with low < high, got {scale!r}", key=option)
    return lo, hi


def _standard_frame(frame: pl.DataFrame, fields: FieldMap, label: str, rows_of: callable) -> pl.DataFrame:
    """Lift ``metadata`` fields, rename mapped columns, build the target log-prob object, rescale."""
    if "metadata" in frame.columns and isinstance(frame.schema["metadata"], pl.Struct):
        meta = frame.get_column("metadata")
        lifted = []
        for f in frame.schema["metadata"].fields:
            inner = meta.struct.field(f.name)
            if f.name in frame.columns:  # top level first, then metadata (as the loader does)
                top = frame.get_column(f.name)
                inner = pl.select(pl.coalesce(top, inner.cast(top.dtype, strict=False))).to_series()
            lifted.append(inner.alias(f.name))
        frame = frame.drop("metadata").with_columns(lifted)
    for user, std in fields.renames.items():
        if user not in frame.columns:
            option = {"judge_score": "judge_field", "oracle_label": "oracle_field", "prompt_id": "prompt_id_field",
                      "base_policy_logprob": "base_logprob_field"}[std]
            if std == "oracle_label":  # the oracle is optional: no column = no labels
                continue
            raise ConfigError(f"column '{user}' not found in {label} (columns: {', '.join(frame.columns)})",
                              key=option)
        if std in frame.columns:
            frame = frame.drop(std)
        frame = frame.rename({user: std})
    if fields.target_logprobs:
        missing = [c for c in fields.target_logprobs.values() if c not in frame.columns]
        if missing:
            raise ConfigError(f"columns {missing} not found in {label}", key="target_logprob_fields")
        frame = frame.with_columns(pl.struct(**{p: pl.col(c).cast(pl.Float64, strict=False)
                                               for p, c in fields.target_logprobs.items()})
                                   .alias("target_policy_logprobs"))
    for std, scale, option in (("judge_score", fields.judge_scale, "judge_scale"),
                               ("oracle_label", fields.oracle_scale, "oracle_scale")):
        if scale is None or std not in frame.columns:
            continue
        lo, hi = _check_scale(scale, option)
        values = frame.get_column(std).cast(pl.Float64, strict=False)
        bad = (values.is_not_null() & ((values < lo) | (values > hi))).fill_null(False).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"value {values[i]!r} is outside {option}=({lo:g}, {hi:g})",
                             path=rows_of(i), field=fields.user_name(std))
        frame = frame.with_columns(((values - lo) / (hi - lo)).alias(std))
    return frame


def _relabel(exc: InputError, fields: FieldMap, where: callable) -> InputError:
    """The loader's error on the temporary file, pointed at the user's data and column names."""
    return InputError(exc.message, path=where(None if exc.line is None else exc.line - 1),
                      field=fields.user_name(exc.field))


def _frame_rows(label: str):
    """row index (0-based, None = the whole frame) -> 'label row i'."""
    return lambda i: label if i is None else f"{label} row {i}"


def _file_rows(path: str):
    """row index (0-based, None = the whole file) -> 'path:line' (JSONL) or 'path row i' (Parquet)."""
    lines = []
    parquet = is_parquet(path)

    def where(i: int | None) -> str:
        if i is None:
            return path
        if parquet:
            return f"{path} row {i}"
        if not lines:
            lines.extend(nonblank_line_numbers(path))
        return f"{path}:{lines[i]}" if i < len(lines) else path
    return where


def _via_temp(frame: pl.DataFrame, fields: FieldMap, label: str, where: callable, tmp_dir: Path, name: str,
              load: callable):
    frame = _standard_frame(frame, fields, label, where)
    file = tmp_dir / f"{name}.jsonl"
    frame.write_ndjson(file)
    try:
        return load(str(file))
    except InputError as exc:
        raise _relabel(exc, fields, where) from None


def load_logged(data: Any, fields: FieldMap, tmp_dir: Path, response_lengths: bool = True) -> LoggedData:
    """The logged data from a path or DataFrame (see the module docstring).

    Parameters
    ----------
    data : str, Path, polars.DataFrame or pandas.DataFrame
        The logged data (a path: JSONL or Parquet).
    fields : FieldMap
        Where the standard fields are, and the scales to convert.
    tmp_dir : Path
        A private folder for the standardised JSONL the loader reads.
    response_lengths : bool, default=True
        Read the response lengths (:func:`cje.data.loaders.load_logged_data`).

    Returns
    -------
    LoggedData
        Its ``path`` is the user's file, or ``"<DataFrame>"``.

    Raises
    ------
    ConfigError
        ``data`` is neither a path nor a DataFrame, a mapped column is missing, or a scale is
        not a pair (low, high) with low < high.
    InputError
        The loader's errors, pointed at the user's file and line or DataFrame row and column
        name; a DataFrame with no rows; a value outside its scale.
    """
    frame = as_polars(data)
    if frame is None:
        if not isinstance(data, (str, Path)):
            raise ConfigError(f"expected a path or a polars/pandas DataFrame, got {type(data).__name__}",
                              key="data")
        path = str(data)
        if fields.is_standard:
            return load_logged_data(path, response_lengths)
        logged = _via_temp(read_frame(path), fields, path, _file_rows(path), tmp_dir, "logged",
                           lambda p: load_logged_data(p, response_lengths))
        logged.path = path
        return logged
    if frame.height == 0:
        raise InputError("the DataFrame has no rows", path="data")
    logged = _via_temp(frame, fields, "data", _frame_rows("data"), tmp_dir, "logged",
                       lambda p: load_logged_data(p, response_lengths))
    logged.path = "<DataFrame>"
    return logged


def _fresh_frames(fresh: Any, fields: FieldMap) -> dict[str, pl.DataFrame] | None:
    """{policy: frame} from a dict of frames or a long frame with a policy column; None for a path."""
    if isinstance(fresh, dict):
        out = {}
        for policy, frame in fresh.items():
            converted = as_polars(frame)
            if converted is None:
                raise ConfigError(f"fresh_draws['{policy}'] must be a polars/pandas DataFrame, got "
                                  f"{type(frame).__name__}", key="fresh_draws")
            out[str(policy)] = converted
        return out
    frame = as_polars(fresh)
    if frame is None:
        return None
    if fields.policy not in frame.columns:
        raise ConfigError(f"a single fresh-draws DataFrame needs a '{fields.policy}' column naming each row's "
                          "policy (or pass {policy: DataFrame})", key="policy_field")
    return {str(k[0] if isinstance(k, tuple) else k): v.drop(fields.policy)
            for k, v in frame.partition_by(fields.policy, as_dict=True).items()}


def load_fresh(fresh: Any, policies: list[str], fields: FieldMap, tmp_dir: Path,
               response_lengths: bool = True) -> dict[str, FreshDraws]:
    """Fresh draws of the target ``policies`` from a folder, {policy: DataFrame} or a long DataFrame.

    Policies in the input that are not targets of the logged data (e.g. the base
    policy's own draws) are ignored, as ``cje analyze`` ignores their files; a
    warning names them.

    Parameters
    ----------
    fresh : str, Path, dict of str to DataFrame, DataFrame or None
        A folder of ``{policy}_responses.jsonl`` (or ``.parquet``), {policy: DataFrame}, or one
        long DataFrame with a policy column (``fields.policy``); None for no fresh draws.
    policies : list of str
        The target policies of the logged data.
    fields : FieldMap
        Where the standard fields are (target log-prob columns are ignored here).
    tmp_dir : Path
        A private folder for the standardised JSONL files.
    response_lengths : bool, default=True
        Read the response lengths (:func:`cje.data.loaders.load_fresh_draws`).

    Returns
    -------
    dict of str to FreshDraws
        {policy: draws} for the target policies found in ``fresh``.

    Raises
    ------
    ConfigError
        ``fresh`` is of the wrong type, a DataFrame in the dict is not one, or a long frame
        has no policy column.
    InputError
        The loader's errors, pointed at the user's data; the folder is missing.
    """
    if fresh is None:
        return {}
    fields = replace(fields, target_logprobs=None)  # log-prob columns belong to the logged rows only
    frames = _fresh_frames(fresh, fields)
    if frames is None:
        if not isinstance(fresh, (str, Path)):
            raise ConfigError("expected a folder, a {policy: DataFrame} dict or a DataFrame with a policy "
                              f"column, got {type(fresh).__name__}", key="fresh_draws")
        directory = Path(fresh)
        if fields.is_standard:
            return load_fresh_draws_dir(directory, policies, response_lengths)
        out = {}
        for policy, file in fresh_draw_files(directory, policies)[0].items():
            draws = _via_temp(read_frame(file), fields, str(file), _file_rows(str(file)), tmp_dir,
                              f"fresh_{len(out)}",
                              lambda p, policy=policy: load_fresh_draws(p, policy, response_lengths))
            draws.path = str(file)
            out[policy] = draws
        return out
    ignored = sorted(set(frames) - set(policies))
    if ignored:
        warnings.warn(f"fresh draws of {ignored} ignored: not target policies of the logged data "
                      f"({', '.join(policies)})", stacklevel=3)
    out = {}
    for i, policy in enumerate(p for p in policies if p in frames):
        label = f"fresh_draws['{policy}']"
        draws = _via_temp(frames[policy], fields, label, _frame_rows(label), tmp_dir, f"fresh_{i}",
                          lambda p, policy=policy: load_fresh_draws(p, policy, response_lengths))
        draws.path = "<DataFrame>"
        out[policy] = draws
    return out
