"""Resume side cache for API stages, and atomic publication of their outputs.

Snakemake deletes a failed job's declared output, so an API stage appends every
finished record to a *side cache* (``OUTPUT.cache.jsonl`` by default, outside the
declared outputs), flushed and fsynced after every batch. A rerun reads the cache,
skips records that are already done and only then writes the declared output
atomically (temp file + ``os.replace``), sorted and deduplicated.

Record identity is a key tuple (e.g. ``(prompt_id, draw_idx)``). Each cache line
also carries ``cache_fingerprint`` (a hash of the policy/scorer settings): lines
written under other settings are ignored, so editing a policy never reuses stale
answers. A record with ``status == "error"`` is retried on rerun unless
``retry_errors=False``; an ``ok`` record is never requested again.

A SIGKILL can tear the last line; ``SideCache`` drops such a line (and truncates
it away before appending). A broken line in the middle is reported with its line
number.

Use::

    cache = SideCache(path, key_fields=("prompt_id", "draw_idx"), fingerprint=fp)
    todo = [item for item in work if not cache.is_done(item)]
    with cache:                       # flushes + fsyncs the last partial batch
        for rec in results: cache.add(rec)
    publish_jsonl(output, cache.records(), key_fields=cache.key_fields)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence

from cje.errors import InputError
from cje.atomic import atomic_writer

log = logging.getLogger(__name__)
FINGERPRINT_FIELD = "cache_fingerprint"


def default_cache_path(output: str | os.PathLike) -> Path:
    """``OUTPUT.cache.jsonl`` next to the declared output."""
    return Path(str(output) + ".cache.jsonl")


def record_key(record: dict, key_fields: Sequence[str]) -> tuple:
    """The identity tuple of ``record`` (missing fields -> None)."""
    return tuple(record.get(k) for k in key_fields)


def _better(new: dict, old: dict | None) -> bool:
    """An ok record beats an error record; otherwise the later record wins."""
    if old is None:
        return True
    return not (old.get("status") == "ok" and new.get("status") != "ok")


class SideCache:
    """Append-only JSONL cache of finished records keyed by ``key_fields``.

    ``batch_size`` records are buffered, then written, flushed and fsynced
    together (at most one batch is lost on a crash). ``fingerprint`` (any string,
    or None to accept all lines) identifies the settings the records belong to.
    """

    def __init__(self, path: str | os.PathLike, key_fields: Sequence[str],
                 fingerprint: str | None = None, batch_size: int = 20,
                 retry_errors: bool = True):
        self.path = Path(path)
        self.key_fields = tuple(key_fields)
        self.fingerprint = fingerprint
        self.batch_size = max(1, int(batch_size))
        self.retry_errors = retry_errors
        self._records: dict[tuple, dict] = {}
        self._buffer: list[str] = []
        self.n_loaded = 0
        self.n_stale = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1          # end of the last complete line
        for i, raw in enumerate(data[:cut].split(b"\n")[:-1], 1):
            if raw.strip():
                rec = self._parse(raw, i)
                if rec is None:
                    raise InputError("corrupt cache line; delete the cache file to start over",
                                     path=str(self.path), line=i)
                self._accept(rec)
        tail = data[cut:]
        if not tail.strip():
            return
        rec = self._parse(tail, None)         # a kill mid-write leaves a torn last line
        with open(self.path, "r+b") as fh:
            if rec is None:
                log.warning("%s: dropping torn last line (%d bytes)", self.path, len(tail))
                fh.truncate(cut)
            else:
                self._accept(rec)
                fh.seek(len(data))
                fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _parse(raw: bytes, line: int | None) -> dict | None:
        try:
            rec = json.loads(raw)
        except ValueError:
            return None
        return rec if isinstance(rec, dict) else None

    def _accept(self, rec: dict) -> None:
        fp = rec.pop(FINGERPRINT_FIELD, None)
        if self.fingerprint is not None and fp != self.fingerprint:
            self.n_stale += 1
            return
        key = record_key(rec, self.key_fields)
        if _better(rec, self._records.get(key)):
            self._records[key] = rec
        self.n_loaded += 1

    def get(self, key: tuple) -> dict | None:
        """The cached record for ``key`` (or None)."""
        return self._records.get(tuple(key))

    def is_done(self, item: dict | tuple) -> bool:
        """True when ``item`` (a record-like dict or a key tuple) needs no new call:
        cached with status ok (or any status when ``retry_errors`` is False)."""
        key = tuple(item) if isinstance(item, tuple) else record_key(item, self.key_fields)
        rec = self._records.get(key)
        if rec is None:
            return False
        return rec.get("status") == "ok" or not self.retry_errors

    def add(self, record: dict) -> None:
        """Remember ``record`` and buffer its cache line; flush when a batch is full."""
        key = record_key(record, self.key_fields)
        if _better(record, self._records.get(key)):
            self._records[key] = dict(record)
        line = dict(record)
        if self.fingerprint is not None:
            line[FINGERPRINT_FIELD] = self.fingerprint
        self._buffer.append(json.dumps(line, ensure_ascii=False))
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Append the buffered lines in one write, then flush and fsync."""
        if not self._buffer:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = ("\n".join(self._buffer) + "\n").encode("utf-8")
        with open(self.path, "ab") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        self._buffer.clear()

    def records(self) -> list[dict]:
        """All current records (one per key), in key order."""
        return [self._records[k] for k in sorted(self._records, key=_sort_key)]

    def __enter__(self) -> "SideCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()


def _sort_key(key: tuple) -> tuple:
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in key)


def dedupe_sorted(records: Iterable[dict], key_fields: Sequence[str]) -> list[dict]:
    """One record per key (ok beats error, else the later one), sorted by key."""
    best: dict[tuple, dict] = {}
    for rec in records:
        k = record_key(rec, key_fields)
        if _better(rec, best.get(k)):
            best[k] = rec
    return [best[k] for k in sorted(best, key=_sort_key)]


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write ``records`` as JSON lines to ``path`` with the one atomic writer
    (:func:`cje.atomic.atomic_writer`: fsync, rename, fsync folder, 0666 minus umask).
    Returns the number of lines written."""
    n = 0
    with atomic_writer(path) as fh:
        for rec in records:
            fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
            n += 1
    return n


def publish_jsonl(path: str | os.PathLike, records: Iterable[dict],
                  key_fields: Sequence[str]) -> int:
    """Deduplicate + sort ``records`` by ``key_fields`` and write them atomically."""
    return write_jsonl_atomic(path, dedupe_sorted(records, key_fields))


def read_jsonl(path: str | os.PathLike, required: Sequence[str] = ()) -> list[dict]:
    """Read a JSONL file; ``InputError`` names file, 1-based line and missing field."""
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


def all_cached(items: list[dict], cache: SideCache) -> dict | None:
    """Counts for a stage with nothing left to do (every item cached), else None; lets a
    stage skip starting a server or client on a rerun."""
    if all(cache.is_done(it) for it in items):
        return {"total": len(items), "cached": len(items), "ran": 0, "ok": 0, "error": 0}
    return None


async def run_resumable(items: list[dict], cache: SideCache,
                        work: Callable[[dict], Awaitable[dict]], desc: str,
                        workers: int) -> dict:
    """Run ``work(item) -> record`` for every item the cache does not already hold.

    ``workers`` coroutines pull from a queue (the client's semaphore still bounds
    the requests in flight); every finished record goes to ``cache.add`` (flushed
    per batch); the cache is flushed on every exit path, so a crash or a
    ``FatalAPIError`` loses nothing that finished. An exception in ``work`` cancels
    the remaining items and is re-raised. Returns ``{"total", "cached", "ran",
    "ok", "error"}`` counts.
    """
    from cje.llm.progress import Progress

    todo = [it for it in items if not cache.is_done(it)]
    counts = {"total": len(items), "cached": len(items) - len(todo), "ran": 0, "ok": 0,
              "error": 0}
    queue: asyncio.Queue = asyncio.Queue()
    for it in todo:
        queue.put_nowait(it)

    with Progress(len(items), desc, initial=counts["cached"]) as bar:
        async def worker() -> None:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                rec = await work(item)
                cache.add(rec)
                counts["ran"] += 1
                counts["ok" if rec.get("status") == "ok" else "error"] += 1
                bar.update(1)

        tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(workers, len(todo))))]
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
            cache.flush()
    return counts
