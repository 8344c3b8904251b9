"""A data file (logged data or fresh draws): JSONL or Parquet, told apart by its first bytes.

Both readers give the same view: ``schema`` (the type of every top-level field),
``n_rows``, ``read(columns, lengths)`` (projected; texts as their lengths),
``null_rows(field)``, ``location(row)`` (``{"line": n}`` for JSONL, ``{"row": i}``
for Parquet, the keywords of :class:`cje.errors.InputError`) and ``raw_rows`` for
the error paths that show the offending value. The loaders
(:mod:`cje.data.loaders`) and the field checks (:mod:`cje.data.fields`) see only
this view, so every check and every message is the same for both formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Union

import polars as pl

from cje.data import jsonl
from cje.data.jsonl import JsonlFile, open_jsonl
from cje.data.parquet import ParquetFile, is_parquet, open_parquet

__all__ = ["DataFile", "open_data", "read_frame", "raw_rows", "row_location"]

DataFile = Union[JsonlFile, ParquetFile]


def open_data(path: str | Path) -> DataFile:
    """Open a data file: Parquet when it starts with ``PAR1``, else the strict JSONL reader.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    JsonlFile or ParquetFile
        The checked file.

    Raises
    ------
    InputError
        Either reader's one-line error naming the file (and line or row).
    """
    return open_parquet(path) if is_parquet(path) else open_jsonl(path)


def read_frame(path: str | Path, columns: list[str] | None = None, lengths: tuple[str, ...] = ()) -> pl.DataFrame:
    """The rows of a data file, projected to ``columns`` (None = all), texts in ``lengths`` as lengths.

    Parameters
    ----------
    path : str or Path
        A JSONL or Parquet file.
    columns : list of str or None, default=None
        Top-level fields to keep.
    lengths : tuple of str, default=()
        Text fields to return as their length in characters.

    Returns
    -------
    polars.DataFrame
        One row per record.

    Raises
    ------
    InputError
        As :func:`open_data`.
    """
    return open_data(path).read(columns, lengths)


def row_location(path: str | Path, index: int) -> dict[str, int]:
    """Where row ``index`` (0-based) of a data file is: ``{"line": n}`` (JSONL) or ``{"row": index}``.

    Error paths only: for JSONL the file's lines are counted again.

    Parameters
    ----------
    path : str or Path
        A JSONL or Parquet file.
    index : int
        The 0-based row.

    Returns
    -------
    dict of str to int
        Keywords of :class:`cje.errors.InputError`.
    """
    return {"row": int(index)} if is_parquet(path) else {"line": jsonl.nonblank_line_numbers(path)[index]}


def raw_rows(path: str | Path, field: str | None = None) -> Iterator[tuple[dict[str, int], Any]]:
    """(location, record) of every row of a data file, for error messages that show a value.

    Parameters
    ----------
    path : str or Path
        A JSONL or Parquet file.
    field : str or None, default=None
        The top-level field the caller looks at (a Parquet file then reads only it).

    Yields
    ------
    location : dict
        ``{"line": n}`` or ``{"row": i}``.
    value : object
        The record as parsed JSON (a dict for every valid row).
    """
    return open_parquet(path).raw_rows(field) if is_parquet(path) else jsonl.raw_rows(path)
