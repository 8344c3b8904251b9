"""Checks paid once per file version: a cache of what the strict JSONL reader learnt.

The strict checks of :mod:`cje.data.jsonl` (line size, encoding, nesting, repeated
keys, a type for every field) read every byte of a file and cost more than reading
the few columns an analysis uses. A file that passed them is recorded under a key
of its identity: the resolved path, device, inode, size, modification and change
times, the reader's version and the polars version (the inferred types depend on
it). Every write to a file moves its change time (ctime), which no user tool can set
back, so a changed file gets a new key and is checked again -- the same identity
git's index and ccache trust.

The record holds what the checks learnt: the type of every field (as an empty
Arrow IPC frame), the number of rows and the null count of every top-level field.

A record is written only when the file's change time is at least
``SETTLE_SECONDS`` older than the start of the checks, and its identity is the
same before and after them: a write within the file system's timestamp
granularity then cannot share the key of the checked version (git's "racily
clean" files). A freshly written file is therefore checked in full until it has
settled.

Where: ``$CJE_CACHE_DIR/checked-inputs/`` (default ``$XDG_CACHE_HOME/cje`` or
``~/.cache/cje``); ``CJE_CACHE_DIR=""`` turns the cache off. A cache folder that
cannot be read or written is ignored: the checks then run every time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cje.atomic import atomic_write_text

__all__ = ["CheckedFile", "FileIdentity", "identity", "lookup", "record", "cache_dir", "SETTLE_SECONDS"]

#: Bump when the checks of :mod:`cje.data.jsonl` change, so older verdicts are not trusted.
READER_VERSION = 1
#: How long a file must have been left alone before its verdict is kept.
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class CheckedFile:
    """What the strict checks learnt about one JSONL file (every row, every field).

    Parameters
    ----------
    schema : polars.Schema
        The type of every top-level field, as polars infers it from all rows.
    n_rows : int
        Non-blank lines (= rows).
    null_counts : dict of str to int
        Rows in which each top-level field is null or absent.
    """

    schema: pl.Schema
    n_rows: int
    null_counts: dict[str, int]


@dataclass(frozen=True)
class FileIdentity:
    """A file version: ``stat`` fields that change with every write, and the resolved path."""

    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    def key(self) -> str:
        """blake2b-128 hex of the identity, the reader version and the polars version."""
        text = json.dumps([READER_VERSION, pl.__version__, self.path, self.dev, self.ino, self.size,
                           self.mtime_ns, self.ctime_ns])
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def identity(path: str | Path) -> FileIdentity | None:
    """The identity of ``path`` now; None when it cannot be stat-ed.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    FileIdentity or None
        Its identity.
    """
    try:
        real = os.path.realpath(path)
        info = os.stat(real)
    except OSError:
        return None
    return FileIdentity(real, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def cache_dir() -> Path | None:
    """``$CJE_CACHE_DIR/checked-inputs`` (default under ``$XDG_CACHE_HOME/cje`` or ``~/.cache/cje``).

    Returns
    -------
    Path or None
        The folder; None when ``CJE_CACHE_DIR`` is set to the empty string (cache off).
    """
    root = os.environ.get("CJE_CACHE_DIR")
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "cje")
    if not root:
        return None
    return Path(root) / "checked-inputs"


def lookup(ident: FileIdentity | None) -> CheckedFile | None:
    """The recorded verdict of this file version, or None (never checked, cache off or unreadable).

    Parameters
    ----------
    ident : FileIdentity or None
        The file version (:func:`identity`).

    Returns
    -------
    CheckedFile or None
        What its checks learnt.
    """
    folder = cache_dir()
    if ident is None or folder is None:
        return None
    try:
        data = json.loads((folder / f"{ident.key()}.json").read_text(encoding="utf-8"))
        schema = pl.read_ipc_schema(io.BytesIO(base64.b64decode(data["schema"])))
        return CheckedFile(schema=pl.Schema(schema), n_rows=int(data["n_rows"]),
                           null_counts={str(k): int(v) for k, v in data["null_counts"].items()})
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError):
        return None  # absent, or written by another version: check again


def record(ident: FileIdentity | None, started: float, checked: CheckedFile) -> bool:
    """Keep the verdict of a file version that passed the checks, when it is safe to.

    Parameters
    ----------
    ident : FileIdentity or None
        The identity taken before the checks.
    started : float
        ``time.time()`` when the checks started.
    checked : CheckedFile
        What they learnt.

    Returns
    -------
    bool
        True when the record was written (the file had settled and did not change
        during the checks, and the cache folder is writable).
    """
    folder = cache_dir()
    if ident is None or folder is None:
        return False
    if ident.ctime_ns / 1e9 > started - SETTLE_SECONDS or identity(ident.path) != ident:
        return False
    buffer = io.BytesIO()
    pl.DataFrame(schema=checked.schema).write_ipc(buffer)
    text = json.dumps({"n_rows": checked.n_rows, "null_counts": checked.null_counts,
                       "schema": base64.b64encode(buffer.getvalue()).decode("ascii"),
                       "file": ident.path})
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{ident.key()}.json", text)
    except OSError:
        return False
    return True
