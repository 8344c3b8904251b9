"""Typed columns of a JSONL frame, with errors naming file:line:field (used by :mod:`cje.data.loaders`).

A number must be a JSON number: the string ``"0.5"`` and ``true`` are errors, not
0.5 and 1.0 (polars would turn a column mixing numbers and strings into strings,
and :func:`polars.from_dicts` turns ``true`` into 1.0). A field may sit at the top
level or under ``metadata`` (the pipeline's layout); each source is checked on its
own before they are combined. The checks are vectorised dtype tests; only the
error path reads lines one by one to name the first offending line and value.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import polars as pl

from cje.data.tables import raw_rows
from cje.errors import InputError

__all__ = ["field_sources", "numeric_field", "integer_field", "text_field", "check_text_type", "describe"]


def describe(value: Any) -> str:
    """A JSON value as a user wrote it: ``the string '0.5'``, ``true``, ``an object``, ``1.5``.

    Parameters
    ----------
    value : object
        A parsed JSON value.

    Returns
    -------
    str
        Its description for an error message (strings longer than 40 characters are shortened).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, float):
        return format(value, "g") if np.isfinite(value) else str(value)
    return str(value)


def field_sources(frame: pl.DataFrame, name: str) -> list[tuple[tuple[str, ...], pl.Series]]:
    """Where ``name`` is in ``frame``: [(("name",), top-level column), (("metadata", "name"), struct field)].

    Parameters
    ----------
    frame : polars.DataFrame
        A frame read by :func:`cje.data.jsonl.read_jsonl_frame`.
    name : str
        A field name.

    Returns
    -------
    list of (tuple of str, polars.Series)
        The path of each place the field is found and its column; empty when absent.
    """
    out = []
    if name in frame.columns:
        out.append(((name,), frame.get_column(name)))
    if "metadata" in frame.columns and isinstance(frame.schema["metadata"], pl.Struct):
        if name in {f.name for f in frame.schema["metadata"].fields}:
            out.append((("metadata", name), frame.get_column("metadata").struct.field(name)))
    return out


def _first_bad(path: str, where: tuple[str, ...], bad: Callable[[Any], bool]) -> tuple[dict, Any]:
    for location, row in raw_rows(path, where[0]):
        value: Any = row
        for key in where:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and bad(value):
            return location, value
    return {}, None


def _type_error(path: str, where: tuple[str, ...], expected: str, bad: Callable[[Any], bool]) -> InputError:
    location, value = _first_bad(path, where, bad)
    got = "" if not location else f", got {describe(value)}"
    return InputError(f"must be {expected}{got}", path=path, field=".".join(where), **location)


def _is_not_number(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float))


def _numeric_series(series: pl.Series, path: str, where: tuple[str, ...]) -> pl.Series:
    dtype = series.dtype
    if dtype == pl.Null or dtype.is_numeric():
        return series.cast(pl.Float64)
    raise _type_error(path, where, "a number", _is_not_number)


def _coalesce(parts: list[pl.Series]) -> pl.Series:
    return parts[0] if len(parts) == 1 else pl.select(pl.coalesce(parts)).to_series()


def numeric_field(frame: pl.DataFrame, name: str, path: str,
                  series: pl.Series | None = None, label: str | None = None) -> np.ndarray | None:
    """Float array of field ``name`` (NaN where null), or None when absent.

    Top-level and ``metadata`` values are each checked, then coalesced (top level first).

    Parameters
    ----------
    frame : polars.DataFrame or None
        The frame to look in (unused with ``series``).
    name : str
        The field name.
    path : str
        The file, for error messages.
    series : polars.Series or None, default=None
        Check this one column instead (e.g. a struct field such as
        ``target_policy_logprobs.clone``).
    label : str or None, default=None
        The dotted field name of ``series`` in error messages.

    Returns
    -------
    ndarray of float or None
        The values (NaN where null); None when the field is absent.

    Raises
    ------
    InputError
        Naming the first line whose value is not a JSON number (a string, a boolean, an object, ...).
    """
    if series is not None:
        return _numeric_series(series, path, tuple(label.split("."))).to_numpy().astype(float)
    sources = field_sources(frame, name)
    if not sources:
        return None
    parts = [_numeric_series(s, path, where) for where, s in sources]
    return _coalesce(parts).to_numpy().astype(float)


def integer_field(frame: pl.DataFrame, name: str, path: str, minimum: int = 0) -> np.ndarray | None:
    """Int64 array of an integer field (null -> ``minimum``), or None when absent.

    Integral floats (``1.0``) are accepted.

    Parameters
    ----------
    frame : polars.DataFrame
        The frame to look in.
    name : str
        The field name.
    path : str
        The file, for error messages.
    minimum : int, default=0
        The smallest allowed value, also the value of nulls.

    Returns
    -------
    ndarray of int64 or None
        The values; None when the field is absent.

    Raises
    ------
    InputError
        Naming the line of a fraction, a string, a boolean or a value below ``minimum``.
    """
    sources = field_sources(frame, name)
    if not sources:
        return None
    parts = []
    for where, s in sources:
        values = _numeric_series(s, path, where)
        finite = values.drop_nulls()
        if ((finite != finite.round(0)) | (finite < minimum) | finite.is_nan()).any():
            raise _type_error(path, where, f"an integer >= {minimum}",
                              lambda v: _is_not_number(v) or v != int(v) or v < minimum)
        parts.append(values)
    return _coalesce(parts).fill_null(minimum).cast(pl.Int64).to_numpy()


def text_field(frame: pl.DataFrame, name: str, path: str, allow_integer: bool = False) -> pl.Series | None:
    """String column of field ``name`` (coalesced top level / metadata), or None when absent.

    Parameters
    ----------
    frame : polars.DataFrame
        The frame to look in.
    name : str
        The field name.
    path : str
        The file, for error messages.
    allow_integer : bool, default=False
        Also accept JSON integers (e.g. numeric prompt ids), which become their decimal text.

    Returns
    -------
    polars.Series of str or None
        The coalesced column; None when the field is absent.

    Raises
    ------
    InputError
        A value is not a JSON string (or integer, with ``allow_integer``); the message names its line.
    """
    sources = field_sources(frame, name)
    if not sources:
        return None
    for where, s in sources:
        _check_text(s.dtype, path, where, allow_integer)
    return _coalesce([s.cast(pl.String) for _, s in sources])


def _check_text(dtype: pl.DataType, path: str, where: tuple[str, ...], allow_integer: bool) -> None:
    if dtype in (pl.String, pl.Null) or (allow_integer and dtype.is_integer()):
        return
    expected = "a string" + (" or an integer" if allow_integer else "")
    raise _type_error(path, where, expected,
                      lambda v: not (isinstance(v, str) or (allow_integer and isinstance(v, int)
                                                           and not isinstance(v, bool))))


def check_text_type(schema: pl.Schema, name: str, path: str) -> None:
    """Check from the file's schema alone that the top-level field ``name`` holds only strings (or nulls).

    For text an analysis never reads (a prompt, a response): the values are not loaded.

    Parameters
    ----------
    schema : polars.Schema
        The type of every top-level field of the file.
    name : str
        The field (absent: nothing to check).
    path : str
        The file, for error messages.

    Raises
    ------
    InputError
        Some value is not a string; the message names its line (row) and shows it.
    """
    if name in schema:
        _check_text(schema[name], path, (name,), allow_integer=False)
