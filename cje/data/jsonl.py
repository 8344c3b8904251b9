"""The one JSONL reader: strict JSON, bounded lines, clear one-line errors naming file:line.

:func:`read_jsonl_frame` is the only way cje reads a data file (logged data, fresh
draws, API frames). In order, it

1. checks the path: missing, a dangling symlink, a symlink loop, a folder, a FIFO
   or device, unreadable -- each its own message;
2. reads in 16 MiB chunks and stops as soon as one line exceeds ``MAX_LINE_BYTES``
   (16 MiB), so a 1 GB line fails in well under a second with bounded memory
   instead of a 5 GB parse or a Rust out-of-memory abort;
3. detects compression (gzip, zstd, bzip2, xz, zip magic bytes), UTF-16/32
   byte-order marks and NUL bytes (binary data, UTF-16 without a mark), strips a
   UTF-8 byte-order mark, and rejects invalid UTF-8 naming line and column;
4. rejects lines nested deeper than ``MAX_DEPTH`` (64) objects/arrays *before*
   any parser runs (polars segfaults near depth 1,000; :mod:`json` raises
   RecursionError near 100,000);
5. infers the type of every field over all rows with polars (vectorised, no
   column is built), and counts rows and nulls in one streaming pass; when that
   fails, or the file uses the non-standard tokens Python writes for floats
   (``NaN``, ``Infinity``), it parses line by line with :mod:`json`, which names
   the first malformed line (there booleans are kept as the strings
   ``"true"``/``"false"``, so no later step can take them for 1 and 0);
6. rejects a key repeated within one object (``{"a": 1, "a": 2}``), naming
   file:line and the key. polars keeps the first value and :mod:`json` the last,
   so a duplicate would otherwise give a number that depends on the parser;
7. keeps the verdict of a file that passed (:mod:`cje.data.checked`, keyed by the
   file version), so the next read of the same file skips steps 2-6.

Steps 4 and 6 tokenise lines with a regex in polars (vectorised), only on the
candidate lines a cheap count finds: lines with more than 64 brackets, and lines
in which some key name occurs twice or a key contains an escape.

Reading is projected (:meth:`JsonlFile.read`): only the fields asked for are
built, each with the type inferred from all rows (so a value does not depend on
which other fields are read), and a text field can be asked for as its length
in characters, so prompts and responses are never held in memory.
"""

from __future__ import annotations

import codecs
import errno
import io
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import polars as pl

from cje.atomic import atomic_write_text, path_kind
from cje.data.checked import CheckedFile, FileIdentity, identity, lookup, record
from cje.errors import InputError, json_error_text

__all__ = ["read_jsonl_frame", "open_jsonl", "JsonlFile", "open_checked", "raw_rows", "nonblank_line_numbers", "read_bytes_checked", "write_jsonl",
           "MAX_LINE_BYTES", "MAX_DEPTH"]

MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64

_MAGIC = ((b"\x1f\x8b", "gzip-compressed; decompress it first (gunzip)"),
          (b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it first (unzstd)"),
          (b"BZh", "bzip2-compressed; decompress it first (bunzip2)"),
          (b"\xfd7zXZ\x00", "xz-compressed; decompress it first (unxz)"),
          (b"PK\x03\x04", "a zip archive; extract the JSONL file first"),
          (b"\xff\xfe\x00\x00", "UTF-32 encoded; convert it to UTF-8 (iconv -f UTF-32 -t UTF-8)"),
          (b"\x00\x00\xfe\xff", "UTF-32 encoded; convert it to UTF-8 (iconv -f UTF-32 -t UTF-8)"),
          (b"\xff\xfe", "UTF-16 encoded; convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)"),
          (b"\xfe\xff", "UTF-16 encoded; convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)"))

_STR = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKEN = _STR + r"\s*:|" + _STR + r"|[{}\[\]]"  # keys (string + colon), other strings, brackets
_KEY_WITH_ESCAPE = r'\\(?:u[0-9a-fA-F]{4}|/)(?:[^"\\]|\\.)*"\s*:'  # a key spelled with \u or \/


def open_checked(path: Path, kind: str = "JSONL") -> int:
    """Open ``path`` for reading after the checks of step 1; return the file descriptor.

    Parameters
    ----------
    path : Path
        The file.
    kind : str, default='JSONL'
        What it should be, in the message for a folder ("is a folder, not a JSONL file").

    Returns
    -------
    int
        A file descriptor open for reading.

    Raises
    ------
    InputError
        One line naming the file: missing, a dangling symlink, a symlink loop, a folder,
        a FIFO or device, unreadable.
    """
    path = Path(path)
    where = str(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("symbolic link loop (the link points back at itself)", path=where) from None
        if exc.errno == errno.ENOENT:
            if path.is_symlink():
                raise InputError(f"is {path_kind(path)} (the file it points to is missing)", path=where) from None
            raise InputError("file not found", path=where) from None
        if exc.errno == errno.EACCES:
            raise InputError("permission denied", path=where) from None
        if exc.errno == errno.ENAMETOOLONG:
            raise InputError("file name too long", path=where) from None
        if exc.errno == errno.ENOTDIR:
            raise InputError("file not found (a parent is not a folder)", path=where) from None
        raise InputError(f"cannot read ({exc.strerror})", path=where) from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"is a folder, not a {kind} file", path=where)
    if not stat.S_ISREG(info.st_mode):
        raise InputError("is not a regular file (a FIFO, socket or device)", path=where)
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        reason = "permission denied" if exc.errno == errno.EACCES else f"cannot read ({exc.strerror})"
        raise InputError(reason, path=where) from None


def read_bytes_checked(path: str | Path, max_line_bytes: int = MAX_LINE_BYTES) -> bytes:
    """Steps 1-3 of the module docstring: the file's bytes, checked, without a UTF-8 mark.

    Memory is bounded by the bytes read before a failing line plus one chunk.

    Parameters
    ----------
    path : str or Path
        The file to read.
    max_line_bytes : int, default=MAX_LINE_BYTES
        The longest line allowed (16 MiB).

    Returns
    -------
    bytes
        The file's content, without a UTF-8 byte-order mark.

    Raises
    ------
    InputError
        One line, file[:line], for a bad path, a line longer than ``max_line_bytes``,
        compressed or UTF-16/32 data, or NUL bytes. (Invalid UTF-8 is reported by
        :func:`read_jsonl_frame`, which decodes the bytes and names line and column.)
    """
    path = Path(path)
    where = str(path)
    fd = open_checked(path)
    chunks: list[bytes] = []
    run = 0       # bytes of the current line read so far
    size = max_line_bytes  # a line inside one chunk is then never too long
    with os.fdopen(fd, "rb", buffering=0) as handle:
        while True:
            chunk = handle.read(size)
            if not chunk:
                break
            if not chunks:
                for magic, what in _MAGIC:
                    if chunk.startswith(magic):
                        raise InputError(f"file is {what}", path=where)
            first = chunk.find(b"\n")
            if run + (len(chunk) if first < 0 else first) > max_line_bytes:
                raise InputError(f"line longer than {max_line_bytes:,} bytes (not a JSONL file, or one "
                                 "record too large)", path=where,
                                 line=sum(c.count(b"\n") for c in chunks) + 1)
            run = run + len(chunk) if first < 0 else len(chunk) - chunk.rfind(b"\n") - 1
            chunks.append(chunk)
    raw = b"".join(chunks)
    del chunks
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError("contains NUL bytes: a binary file, or UTF-16 text without a byte-order mark "
                         "(convert it to UTF-8)", path=where, line=raw.count(b"\n", 0, nul) + 1)
    return raw


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
                         "convert the file to UTF-8", path=where, line=line) from None


def _lines(raw: bytes, where: str) -> pl.DataFrame:
    """Non-blank lines with their 1-based numbers: columns ``line`` (u32) and ``text``.

    Split by polars (``read_lines``: about 3x faster than ``str.split`` plus a frame,
    and it validates UTF-8, as every polars string must be valid UTF-8). On any
    failure the bytes are decoded in Python, which names the line and column of
    invalid UTF-8, and split there.
    """
    try:
        frame = pl.read_lines(io.BytesIO(raw), name="text", row_index_name="line", row_index_offset=1)
    except Exception:  # noqa: BLE001 - invalid UTF-8, or the unstable API changed
        text = _decode(raw, where)
        frame = pl.DataFrame({"text": text.split("\n")}).with_row_index("line", offset=1)
    return frame.filter(pl.col("text").str.contains(r"[^ \t\r\n]"))  # JSON whitespace only = blank


def _tokens(lines: pl.DataFrame) -> pl.DataFrame:
    """Structural tokens of ``lines`` in order: ``line``, ``token``, ``depth`` (after the token),
    ``instance`` (which object at that depth a key belongs to)."""
    tok = (lines.select("line", token=pl.col("text").str.extract_all(_TOKEN)).explode("token")
           .drop_nulls("token")
           .filter(pl.col("token").str.ends_with(":") | ~pl.col("token").str.starts_with('"')))
    is_open = pl.col("token").is_in(["{", "["]).cast(pl.Int32)
    is_close = pl.col("token").is_in(["}", "]"]).cast(pl.Int32)
    tok = tok.with_columns(open=is_open, depth=(is_open - is_close).cum_sum().over("line"))
    return tok.with_columns(instance=pl.col("open").cum_sum().over("line", "depth"))


def _check_depth(lines: pl.DataFrame, where: str) -> None:
    candidates = lines.filter(pl.col("text").str.count_matches(r"[\[{]") > MAX_DEPTH)
    if candidates.is_empty():
        return
    deep = (_tokens(candidates).group_by("line").agg(pl.col("depth").max())
            .filter(pl.col("depth") > MAX_DEPTH).sort("line"))
    if deep.height:
        raise InputError(f"nested deeper than {MAX_DEPTH} objects/arrays", path=where, line=int(deep["line"][0]))


def _key_names(dtype: pl.DataType, out: set[str]) -> set[str]:
    if isinstance(dtype, pl.Struct):
        for f in dtype.fields:
            out.add(f.name)
            _key_names(f.dtype, out)
    elif isinstance(dtype, (pl.List, pl.Array)):
        _key_names(dtype.inner, out)
    return out


def _check_duplicate_keys(lines: pl.DataFrame, schema: pl.Schema, where: str) -> None:
    """Step 6 for a file polars parsed: candidates by a count, then exact tokenisation."""
    names: set[str] = set(schema)
    for dtype in schema.values():
        _key_names(dtype, names)
    if not names:
        return
    text = pl.col("text")
    repeated = [text.str.count_matches('"' + re.escape(json.dumps(n, ensure_ascii=False)[1:-1]) + r'"\s*:') > 1
                for n in names]
    # a key may also be spelled with \uXXXX or \/ escapes, which the counts above do not see
    escaped = text.str.contains(r"\u", literal=True) | text.str.contains(r"\/", literal=True)
    candidates = lines.filter(pl.any_horizontal(repeated)
                              | (escaped & text.str.contains(_KEY_WITH_ESCAPE)))
    if candidates.is_empty():
        return
    keys = _tokens(candidates).filter(pl.col("token").str.ends_with(":"))
    keys = keys.with_columns(name=pl.col("token").str.replace(r"\s*:$", "").str.json_decode(pl.String))
    dup = (keys.group_by("line", "depth", "instance", "name").len().filter(pl.col("len") > 1)
           .sort("line"))
    if dup.height:
        _raise_duplicate(where, int(dup["line"][0]), dup["name"][0])


def _raise_duplicate(where: str, line: int, name: str) -> None:
    raise InputError(f"key {name!r} appears twice in one object (strict JSON: each key once)",
                     path=where, line=line, field=name)


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _pairs_once(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook``: a repeated key is an error; booleans become the strings "true"/"false"
    so :func:`polars.from_dicts` cannot silently turn them into 1.0 and 0.0 beside numbers."""
    out = {k: (("true" if v else "false") if isinstance(v, bool) else v) for k, v in pairs}
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return out


def _kind(value: Any) -> str:
    return "object" if isinstance(value, dict) else "array" if isinstance(value, list) else "scalar"


def _first_structure_conflict(rows: list[dict], lines: pl.DataFrame) -> tuple[int, str, str, str] | None:
    """(line, field, kind, earlier kind) of the first value whose kind (object / array / scalar)
    differs from the field's kind on an earlier line; fields up to two levels deep. Error path only."""
    kinds: dict[str, str] = {}
    for (number, _), row in zip(lines.iter_rows(), rows):
        items = [(k, v) for k, v in row.items()]
        items += [(f"{k}.{k2}", v2) for k, v in row.items() if isinstance(v, dict) for k2, v2 in v.items()]
        for key, value in items:
            if value is None:
                continue
            kind = _kind(value)
            if kinds.setdefault(key, kind) != kind:
                return number, key, kind, kinds[key]
    return None


def _slow_parse(lines: pl.DataFrame, where: str) -> list[dict[str, Any]]:
    """Line-by-line :mod:`json` parse (error path and NaN/Infinity tokens); names the line."""
    rows = []
    for number, text in lines.iter_rows():
        try:
            row = json.loads(text, object_pairs_hook=_pairs_once)
        except json.JSONDecodeError as exc:
            raise InputError(json_error_text(exc), path=where,
                             line=number) from None
        except _DuplicateKey as dup:
            _raise_duplicate(where, number, dup.key)
        except RecursionError:
            raise InputError(f"nested deeper than {MAX_DEPTH} objects/arrays", path=where,
                             line=number) from None
        if not isinstance(row, dict):
            raise InputError("each line must be a JSON object", path=where, line=number)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class JsonlFile:
    """A JSONL file that passed the checks of the module docstring; read only the fields needed.

    Parameters
    ----------
    path : str
        The file.
    checked : CheckedFile
        What the checks learnt: the type of every field over all rows, the row count,
        the null counts.
    source : bytes or None
        The checked bytes (kept from the checks) or None to read the file again (its
        verdict came from :mod:`cje.data.checked`).
    frame : polars.DataFrame or None
        The whole frame, when only the line-by-line parser could read the file.
    ident : FileIdentity or None
        The file version the verdict of :mod:`cje.data.checked` is for (with ``source=None``).
    """

    path: str
    checked: CheckedFile
    source: bytes | None = None
    frame: pl.DataFrame | None = None
    ident: FileIdentity | None = None

    @property
    def n_rows(self) -> int:
        """Rows (non-blank lines)."""
        return self.checked.n_rows

    @property
    def schema(self) -> pl.Schema:
        """The type of every top-level field, inferred from all rows."""
        return self.checked.schema

    def null_rows(self, field: str) -> np.ndarray:
        """0-based rows in which the top-level ``field`` is null or absent (every row when no row has it).

        Parameters
        ----------
        field : str
            A top-level field.

        Returns
        -------
        ndarray of int
            The rows, ascending; empty without reading anything when the checks counted no null.
        """
        if field not in self.schema:
            return np.arange(self.n_rows)
        if self.checked.null_counts.get(field) == 0:
            return np.zeros(0, dtype=np.int64)
        text = self.schema[field] in (pl.String, pl.Null)
        values = self.read([] if text else [field], lengths=[field] if text else ())
        return np.flatnonzero(values.get_column(field).is_null().to_numpy())

    def location(self, index: int) -> dict[str, int]:
        """Where row ``index`` (0-based) is, as :class:`cje.errors.InputError` keywords: ``{"line": n}``."""
        return {"line": nonblank_line_numbers(self.path)[index]}

    def raw_rows(self, field: str | None = None) -> Iterator[tuple[dict[str, int], Any]]:
        """(location, parsed JSON) of every non-blank line (:func:`raw_rows`); ``field`` is unused."""
        return raw_rows(self.path)

    def read(self, columns: Iterable[str] | None = None, lengths: Iterable[str] = ()) -> pl.DataFrame:
        """The rows, projected to ``columns``, each field with the type inferred from all rows.

        Parameters
        ----------
        columns : iterable of str or None, default=None
            Top-level fields to keep (absent ones are skipped); None = every field.
        lengths : iterable of str, default=()
            Text fields returned as their length in characters (UInt32, null where
            null or absent) instead of the text: the texts are never held whole in memory.

        Returns
        -------
        polars.DataFrame
            ``n_rows`` rows (no columns when none of the fields is present); row ``i``
            came from line ``nonblank_line_numbers(path)[i]``.

        Raises
        ------
        ValueError
            A field asked in ``lengths`` is not text (the caller checks types first).
        """
        schema = self.checked.schema
        keep = list(schema) if columns is None else [c for c in dict.fromkeys(columns) if c in schema]
        texts = [c for c in dict.fromkeys(lengths) if c in schema and c not in keep]
        for name in texts:
            if schema[name] not in (pl.String, pl.Null):
                raise ValueError(f"{name} is {schema[name]}, not text")
        exprs = [pl.col(c) for c in keep] + [pl.col(c).cast(pl.String).str.len_chars() for c in texts]
        if not exprs:
            return pl.DataFrame()
        if self.frame is not None:
            return self.frame.select(exprs)
        source = io.BytesIO(self.source) if self.source is not None else self.path
        sub = pl.Schema({c: schema[c] for c in schema if c in keep or c in texts})
        try:
            frame = pl.scan_ndjson(source, schema=sub).select(exprs).collect(engine="streaming")
        except Exception:  # noqa: BLE001 - handled below
            frame = None
        if self.source is None:  # read by path on a kept verdict: the file may have changed since
            if frame is None or frame.height != self.n_rows or identity(self.path) != self.ident:
                return _check(self.path, use_cache=False).read(columns, lengths)
            return frame
        if frame is None or frame.height != self.n_rows:  # the unprojected parse the checks ran
            try:
                frame = pl.scan_ndjson(io.BytesIO(self.source), schema=schema).select(exprs).collect()
            except Exception:  # noqa: BLE001 - a value polars's profile let through: json names its line
                lines = _lines(self.source, self.path)
                frame = _whole_frame(_slow_parse(lines, self.path), lines, self.path).select(exprs)
        return frame


def open_jsonl(path: str | Path) -> JsonlFile:
    """Check a JSONL file (module docstring), or find its verdict in :mod:`cje.data.checked`.

    Parameters
    ----------
    path : str or Path
        The JSONL file (UTF-8, one JSON object per line; blank lines skipped).

    Returns
    -------
    JsonlFile
        The checked file, ready to read projected.

    Raises
    ------
    InputError
        As :func:`read_jsonl_frame`.
    """
    return _check(path, use_cache=True)


def read_jsonl_frame(path: str | Path, columns: Iterable[str] | None = None,
                     lengths: Iterable[str] = ()) -> pl.DataFrame:
    """Read a JSONL file into a polars DataFrame, one row per non-blank line.

    Parameters
    ----------
    path : str or Path
        The JSONL file (UTF-8, one JSON object per line; blank lines skipped).
    columns : iterable of str or None, default=None
        Top-level fields to keep (:meth:`JsonlFile.read`); None = all.
    lengths : iterable of str, default=()
        Text fields to return as their length in characters.

    Returns
    -------
    polars.DataFrame
        Nested objects are struct columns; integer-valued floats stay numeric. Row ``i``
        came from line ``nonblank_line_numbers(path)[i]``. The values and types of a
        field do not depend on which other fields are read.

    Raises
    ------
    InputError
        One line naming file, line and, for a repeated key, the key: for every check listed in
        the module docstring, an empty file, a line that is not an object, or rows whose
        structures cannot be combined.
    """
    return open_jsonl(path).read(columns, lengths)


def _check(path: str | Path, use_cache: bool) -> JsonlFile:
    where = str(path)
    before = identity(path) if use_cache else None
    known = lookup(before)
    if known is not None:
        return JsonlFile(where, known, ident=before)
    started = time.time()
    raw = read_bytes_checked(path)
    if not raw or raw.isspace():
        raise InputError("file is empty", path=where)
    lines = _lines(raw, where)
    _check_depth(lines, where)
    checked = _profile(raw, lines.height)
    if checked is None:  # polars could not read it, or skipped or split a line: let json judge each one
        frame = _whole_frame(_slow_parse(lines, where), lines, where)
        nulls = {c: frame.get_column(c).null_count() for c in frame.columns}
        return JsonlFile(where, CheckedFile(frame.schema, frame.height, nulls), frame=frame)
    _check_duplicate_keys(lines, checked.schema, where)
    if use_cache and len(raw) == getattr(before, "size", -1):  # no UTF-8 mark (polars does not skip one)
        record(before, started, checked)
    return JsonlFile(where, checked, source=raw)


def _profile(raw: bytes, n_lines: int) -> CheckedFile | None:
    """Types of every field over all rows, row count and null counts, by polars without
    building any column (texts are parsed, never kept); None when polars cannot read it."""
    try:
        schema = pl.scan_ndjson(io.BytesIO(raw), infer_schema_length=None).collect_schema()
        if not len(schema):
            height = pl.read_ndjson(raw).height
            nulls: dict[str, int] = {}
        else:
            count = "n" + "_" * (max(len(c) for c in schema) + 1)  # a name no field has
            leaves = [expr.null_count().alias(f"{count}{i}") for i, expr in enumerate(_struct_leaves(schema))]
            stats = (pl.scan_ndjson(io.BytesIO(raw), schema=schema)
                     .select(pl.all().null_count(), pl.first().len().alias(count), *leaves)
                     .collect(engine="streaming"))
            height = int(stats[count][0])
            nulls = {c: int(stats[c][0]) for c in schema}
    except Exception:  # noqa: BLE001 - polars raises several error types; the slow path names the line
        return None
    if height != n_lines:
        return None
    return CheckedFile(pl.Schema(schema), height, nulls)


def _struct_leaves(schema: pl.Schema) -> list[pl.Expr]:
    """One expression per field nested in a struct column: counting top-level nulls does
    not make every polars version parse a struct's members, so a member whose value has
    the wrong type (``{"judge_score": true}`` among numbers) would pass the profile."""
    leaves: list[pl.Expr] = []

    def walk(expr: pl.Expr, dtype: pl.DataType) -> None:
        if isinstance(dtype, pl.Struct):
            for field in dtype.fields:
                child = expr.struct.field(field.name)
                leaves.append(child)
                walk(child, field.dtype)

    for name, dtype in schema.items():
        walk(pl.col(name), dtype)
    return leaves


def _whole_frame(rows: list[dict[str, Any]], lines: pl.DataFrame, where: str) -> pl.DataFrame:
    try:
        return pl.from_dicts(rows, infer_schema_length=None, strict=False)
    except Exception as exc:  # noqa: BLE001
        conflict = _first_structure_conflict(rows, lines)
        if conflict is not None:
            line, key, kind, before = conflict
            raise InputError(f"is {'an' if kind[0] in 'ao' else 'a'} {kind} here but {'an' if before[0] in 'ao' else 'a'} "
                             f"{before} on earlier lines", path=where, line=line, field=key) from None
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"rows do not share a consistent structure ({message})", path=where) from None


def raw_rows(path: str | Path) -> Iterator[tuple[dict[str, int], Any]]:
    """(location, parsed JSON) of every non-blank line; error paths only (a Python loop).

    Lines that are not valid JSON are skipped.

    Parameters
    ----------
    path : str or Path
        The JSONL file (read with :func:`read_bytes_checked`).

    Yields
    ------
    location : dict
        ``{"line": n}``, the 1-based line (keywords of :class:`cje.errors.InputError`).
    value : object
        The parsed JSON value.

    Raises
    ------
    InputError
        The file fails the checks of :func:`read_bytes_checked`.
    """
    raw = read_bytes_checked(path)
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.strip():
            try:
                yield {"line": number}, json.loads(line)
            except ValueError:
                continue


def nonblank_line_numbers(path: str | Path) -> list[int]:
    """Return the 1-based line numbers of the non-blank lines of ``path``.

    Row ``i`` of a frame read by :func:`read_jsonl_frame` came from line
    ``nonblank_line_numbers(path)[i]``. Only used on error paths.

    Parameters
    ----------
    path : str or Path
        The JSONL file.

    Returns
    -------
    list of int
        Line ``i`` of the list is the line row ``i`` came from.

    Raises
    ------
    InputError
        The file fails the checks of :func:`read_bytes_checked`.
    """
    raw = read_bytes_checked(path)
    return _lines(raw.decode("utf-8", errors="replace").encode("utf-8"), str(path))["line"].to_list()


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write dict rows as JSONL atomically (strict JSON: NaN/inf become null).

    Parameters
    ----------
    path : str or Path
        The file to write (replaced atomically, :func:`cje.atomic.atomic_write_text`).
    rows : iterable of dict
        One JSON object per line; NaN and +-inf anywhere inside become null.
    """
    lines = [json.dumps(_strict(row), ensure_ascii=False) for row in rows]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
