"""Files of the API stages: reading inputs, publishing outputs, running the items of a stage.

A stage fails loudly (:func:`check_failed_rows`): when more than
``execution.max_failed_share`` (default 0.5) of the rows it asked about failed, it raises
:class:`StageFailedError` (one line: the stage, the count, the first error) instead of
publishing them, and ``cje`` exits with code 2.

Resume does not live here: every answer is kept in the per-request cache
(``cje.llm.client.cache``) the moment it arrives, so a rerun of a stage asks the
cache first and sends only what was never answered. A stage recomputes its rows
from those answers and publishes its declared output atomically
(``write_jsonl_atomic``: the one atomic writer, ``cje.atomic``), sorted by key with
one row per key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Sequence

from cje.atomic import atomic_writer
from cje.errors import CJEError, InputError
from cje.llm.stages.progress import Progress

log = logging.getLogger(__name__)


class StageFailedError(CJEError):
    """Too many rows of a stage failed: the stage stops without writing its output.

    Parameters
    ----------
    stage : str
        The stage (``generate:base``, ``judge:base``, ``logprobs:short``).
    n_failed : int
        Rows that failed.
    n_rows : int
        Rows the stage asked about.
    first_error : str
        The first failed row's error (by row order), on one line.
    max_share : float
        The share allowed (``execution.max_failed_share``).
    call_log : str or None, default=None
        The call log's path, named in the message.
    """

    def __init__(self, stage: str, n_failed: int, n_rows: int, first_error: str,
                 max_share: float, call_log: str | None = None):
        self.stage, self.n_failed, self.n_rows = stage, n_failed, n_rows
        how = (f"all {n_rows} rows failed" if n_failed == n_rows else
               f"{n_failed} of {n_rows} rows failed, more than execution.max_failed_share = "
               f"{max_share:g} allows")
        log = f"the call log {call_log}" if call_log else "the call log"
        super().__init__(f"stage {stage}: {how}; first error: {first_error} (output not "
                         f"written; answers received are kept in the request cache, every "
                         f"error is in {log})")


def check_failed_rows(stage: str, rows: Sequence[dict], max_share: float,
                      call_log: str | os.PathLike | None = None) -> None:
    """Raise :class:`StageFailedError` when more than ``max_share`` of ``rows`` failed.

    A row failed when its ``status`` is not ``"ok"``. Pass only the rows the stage asked
    a provider about (not rows skipped because an earlier stage failed them, nor rows
    outside the oracle subset). The first error is the first failed row's ``error`` in
    the given order, prefixed with its ``prompt_id``, on one line (at most 300 characters).

    Parameters
    ----------
    stage : str
        The stage's name (as in the call log).
    rows : sequence of dict
        The stage's rows.
    max_share : float
        In [0, 1]: the share of failed rows allowed (0: none; 1: the check is off, even
        a stage whose every row failed writes its output).
    call_log : str, PathLike or None, default=None
        The stage's call log, named in the message.

    Raises
    ------
    StageFailedError
        More than ``max_share`` of the rows failed (with ``max_share`` < 1: also when all did).
    """
    failed = [r for r in rows if r.get("status") != "ok"]
    if len(failed) <= max_share * len(rows):
        return
    first = failed[0]
    text = " ".join(str(first.get("error") or f"status {first.get('status')!r}").split())
    if len(text) > 300:
        text = text[:297] + "..."
    raise StageFailedError(stage, len(failed), len(rows), f"[{first.get('prompt_id')}] {text}",
                           max_share, str(call_log) if call_log else None)


def record_key(record: dict, key_fields: Sequence[str]) -> tuple:
    """The identity tuple of ``record`` (missing fields -> None).

    Parameters
    ----------
    record : dict
        A row.
    key_fields : sequence of str
        The fields that identify it.

    Returns
    -------
    tuple
        The values of ``key_fields``.
    """
    return tuple(record.get(k) for k in key_fields)


def _better(new: dict, old: dict | None) -> bool:
    """An ok record beats an error record; otherwise the later record wins."""
    if old is None:
        return True
    return not (old.get("status") == "ok" and new.get("status") != "ok")


def _sort_key(key: tuple) -> tuple:
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in key)


def dedupe_sorted(records: Iterable[dict], key_fields: Sequence[str]) -> list[dict]:
    """One record per key (ok beats error, else the later one), sorted by key.

    Parameters
    ----------
    records : iterable of dict
        Rows, possibly several per key.
    key_fields : sequence of str
        The fields that identify a row.

    Returns
    -------
    list of dict
        One record per key, sorted.
    """
    best: dict[tuple, dict] = {}
    for rec in records:
        k = record_key(rec, key_fields)
        if _better(rec, best.get(k)):
            best[k] = rec
    return [best[k] for k in sorted(best, key=_sort_key)]


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write ``records`` as JSON lines to ``path`` with the one atomic writer.

    :func:`cje.atomic.atomic_writer`: fsync, rename, fsync folder, 0666 minus umask.

    Parameters
    ----------
    path : str or PathLike
        The file to replace.
    records : iterable of dict
        One JSON object per line.

    Returns
    -------
    int
        The number of lines written.
    """
    n = 0
    with atomic_writer(path) as fh:
        for rec in records:
            fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
            n += 1
    return n


def publish_jsonl(path: str | os.PathLike, records: Iterable[dict],
                  key_fields: Sequence[str]) -> int:
    """Deduplicate + sort ``records`` by ``key_fields`` and write them atomically.

    Parameters
    ----------
    path : str or PathLike
        The file to replace.
    records : iterable of dict
        Rows, possibly several per key (:func:`dedupe_sorted`).
    key_fields : sequence of str
        The fields that identify a row.

    Returns
    -------
    int
        The number of lines written.
    """
    return write_jsonl_atomic(path, dedupe_sorted(records, key_fields))


def read_jsonl(path: str | os.PathLike, required: Sequence[str] = ()) -> list[dict]:
    """Read a JSONL file; ``InputError`` names file, 1-based line and missing field.

    Parameters
    ----------
    path : str or PathLike
        The file (blank lines skipped).
    required : sequence of str, default=()
        Fields every line must have.

    Returns
    -------
    list of dict
        One dict per non-blank line.

    Raises
    ------
    InputError
        The file does not exist, a line is not valid JSON or not an object, or a required
        field is missing.
    """
    path = Path(path)
    out = []
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file does not exist", path=str(path)) from None
    with fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise InputError(f"not valid JSON ({exc})", path=str(path), line=i) from None
            if not isinstance(rec, dict):
                raise InputError("line is not a JSON object", path=str(path), line=i)
            for f in required:
                if f not in rec:
                    raise InputError("required field is missing", path=str(path), line=i,
                                     field=f)
            out.append(rec)
    return out


async def run_items(items: list[dict], work: Callable[[dict], Awaitable[dict]], desc: str,
                    workers: int) -> tuple[list[dict], dict]:
    """Run ``work(item) -> row`` for every item; return (rows in item order, counts).

    ``workers`` coroutines pull from a queue (the client's semaphore still bounds
    the requests in flight; answers found in the request cache return at once). An
    exception in ``work`` cancels the remaining items and is re-raised (answers
    already received are in the request cache).

    Parameters
    ----------
    items : list of dict
        The work items.
    work : callable
        ``async work(item) -> row``; a row with ``status == "ok"`` counts as ok.
    desc : str
        The stage name shown by the progress report.
    workers : int
        Coroutines pulling items (at least 1, at most ``len(items)``).

    Returns
    -------
    rows : list of dict
        In item order.
    counts : dict
        ``{"total", "ok", "error"}``.
    """

    rows: list[dict | None] = [None] * len(items)
    counts = {"total": len(items), "ok": 0, "error": 0}
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    with Progress(len(items), desc) as bar:
        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                row = await work(items[i])
                rows[i] = row
                counts["ok" if row.get("status") == "ok" else "error"] += 1
                bar.update(1)

        tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(workers, len(items))))]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()
        finally:
            for t in tasks:
                t.cancel()
    return [r for r in rows if r is not None], counts
