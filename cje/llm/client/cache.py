"""Per-request, content-addressed cache of API answers: no call is paid twice.

Every API call of every stage goes through :class:`RequestCache` (in
``cje.llm.client.http.LLMClient``). The key of a call is

    sha256(canonical JSON of {"provider": <kind, base_url, model_package>,
                              "endpoint": "chat" | "completions",
                              "request": <every field sent: model, messages | prompt,
                                          max_tokens, temperature, top_p, stop, logprobs,
                                          echo, response_format, extra_body (seed, ...)>,
                              "sample": <which independent sample of that request>})

so the key depends on what is asked, never on where the row sits: adding prompts,
re-sharding, changing a flush interval or the fresh-draw labelling share reuses
every answer already paid for, and a rerun sends only requests not answered yet.
``sample`` tells independent draws of an identical request apart (the stage sets it:
``cje generate`` uses (prompt_id, draw_idx); a scorer repeating one rubric variant
uses the repetition index; deterministic requests use none).

Storage: one file per answer, ``DIR/<key[:2]>/<key>.json`` (``.err.json`` for a call
that finally failed), written to a unique temporary name (``cje.atomic.temp_name``)
and renamed into place. So, with no index and no lock:

- concurrent writers (several Snakemake jobs, SLURM jobs on one node or on a shared
  file system) never see a partial entry: rename is atomic, and two writers of one
  key write the same answer;
- a SIGKILL leaves at most a temporary file, which readers ignore and the first
  write of a later process in that folder removes (``cje.atomic.is_stale_temp``);
- entries are not fsync-ed: a kill loses nothing the kernel has, and a power loss
  can only leave an entry empty or torn, which is read as a miss (the entry holds its
  own key and must parse), logged, and replaced by the next answer: the price is
  asking those few calls again. Measured on this machine: two fsyncs per answer
  (the published-output writer, ``cje.atomic``) cost 1.7 ms of CPU per request
  through file-system journal contention, more than the whole HTTP call;
- a stage reads only the entries it asks for: memory does not grow with the cache.

An entry is ``{"key", "status", "endpoint", "model", "stage", "prompt_id",
"response" | "error"}``; stage and prompt_id say who asked first (for people reading
the cache; answers are shared by every later asker of the same request).

Error entries (``status: "error"``) are only used when the stage is told not to
retry failed calls (``--no-retry-errors``); an ok answer always wins.

Claims: two jobs may need the same request at the same moment (the log-probs of a
``clone`` policy are the base policy's requests). Before sending, a client *claims*
the key (``DIR/<key[:2]>/<key>.claim``, created with ``O_CREAT | O_EXCL``: atomic on
local and NFS file systems); a client that finds the claim taken waits for the
answer instead of sending (``cje.llm.client.http``). A claim whose owner is gone (same
host: its pid no longer runs; another host: older than ``CLAIM_TTL_S``) is taken
over, so a killed job never blocks its rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from cje.atomic import is_stale_temp, temp_name

CLAIM_TTL_S = 900.0  # a claim of another host older than this is taken over
_HOST = socket.gethostname()

log = logging.getLogger(__name__)
FORMAT = 1  # bump when the entry layout changes


def provider_identity(provider) -> dict:
    """What identifies the answering model server: kind, base_url, model package.

    Not the provider's name (two config entries for one endpoint share answers),
    not its limits or key (they do not change answers).

    Parameters
    ----------
    provider : ProviderConfig
        The provider.

    Returns
    -------
    dict
        ``{"kind", "base_url" (empty for local), "model_package" (None unless local)}``.
    """
    url = (provider.base_url or "").rstrip("/")
    return {"kind": provider.kind, "base_url": url if provider.kind != "local" else "",
            "model_package": provider.model_package if provider.kind == "local" else None}


def request_key(identity: dict, endpoint: str, request: dict, sample: Any = None) -> str:
    """The sha256 hex key of one request (module docstring).

    Parameters
    ----------
    identity : dict
        :func:`provider_identity` of the provider.
    endpoint : {'chat', 'completions'}
        The endpoint.
    request : dict
        Every field sent.
    sample : object, default=None
        Which independent sample of that request.

    Returns
    -------
    str
        64 hex characters.
    """
    blob = json.dumps({"format": FORMAT, "provider": identity, "endpoint": endpoint,
                       "request": request, "sample": sample},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class RequestCache:
    """Content-addressed answers of one provider in folder ``root`` (module docstring).

    ``get(key)`` -> ``{"status": "ok", "response": {...}}``, an error entry
    ``{"status": "error", "error": "..."}`` (only when ``use_errors``), or None.
    ``put_ok(key, response_dict, meta)`` / ``put_error(key, error, meta)`` store one.
    Counters ``hits``, ``misses``, ``stored``, ``unreadable``.

    Parameters
    ----------
    root : str or PathLike
        The cache folder.
    use_errors : bool, default=False
        Answer with stored error entries too (``--no-retry-errors``).
    """

    def __init__(self, root: str | os.PathLike, use_errors: bool = False):
        self.root = Path(root)
        self.use_errors = use_errors
        self.hits = self.misses = self.stored = self.unreadable = 0
        self._cleaned: set[str] = set()  # shard folders whose stale temporaries were removed

    def _path(self, key: str, error: bool = False) -> Path:
        return self.root / key[:2] / (f"{key}.err.json" if error else f"{key}.json")

    def _read(self, path: Path, key: str) -> dict | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("request cache: cannot read %s (%s); asking again", path, exc)
            return None
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict) or entry.get("key") != key:
                raise ValueError("key mismatch")
        except ValueError:
            self.unreadable += 1
            log.warning("request cache: %s is unreadable (a crash before it reached the disk?); "
                        "asking again", path)
            return None
        return entry

    def get(self, key: str) -> dict | None:
        """The cached entry of ``key`` (ok first; the error entry only with ``use_errors``).

        Parameters
        ----------
        key : str
            A :func:`request_key`.

        Returns
        -------
        dict or None
            None on a miss (an unreadable entry is a miss).
        """
        entry = self._read(self._path(key), key)
        if entry is None and self.use_errors:
            entry = self._read(self._path(key, error=True), key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def _write(self, path: Path, entry: dict) -> None:
        """Temporary file + rename (module docstring: no fsync, on purpose)."""
        data = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        folder = path.parent
        if folder.name not in self._cleaned:
            folder.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps(folder)
            self._cleaned.add(folder.name)
        tmp = folder / temp_name(path.name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self.stored += 1

    @staticmethod
    def _remove_stale_temps(folder: Path) -> None:
        """Remove temporaries of this host's killed writers in ``folder``."""
        for entry in os.listdir(folder):
            if entry.startswith(".") and entry.endswith(".tmp"):
                name = entry[1:].split(".json.", 1)[0] + ".json"
                if is_stale_temp(entry, name):
                    try:
                        os.unlink(folder / entry)
                    except FileNotFoundError:
                        pass

    def put_ok(self, key: str, response: dict, meta: dict | None = None) -> None:
        """Store the answer ``response`` (the provider's JSON) of request ``key``.

        An error entry of the same key is removed.

        Parameters
        ----------
        key : str
            A :func:`request_key`.
        response : dict
            The provider's JSON answer.
        meta : dict or None, default=None
            Who asked (endpoint, model, stage, prompt_id).
        """
        self._write(self._path(key), {"key": key, "status": "ok", **(meta or {}),
                                      "response": response})
        err = self._path(key, error=True)
        if err.exists():
            try:
                err.unlink()
            except FileNotFoundError:
                pass

    def put_error(self, key: str, error: str, meta: dict | None = None) -> None:
        """Store the final error of request ``key`` (used only with ``use_errors``).

        Nothing is stored when an ok answer exists (maybe from another job): it always wins.

        Parameters
        ----------
        key : str
            A :func:`request_key`.
        error : str
            The final error.
        meta : dict or None, default=None
            Who asked.
        """
        if self._path(key).exists():
            return  # an ok answer (maybe from another job) always wins
        self._write(self._path(key, error=True), {"key": key, "status": "error", **(meta or {}),
                                                  "error": error})

    def entries(self):
        """Yield every readable ok entry (for tools and tests; stages never scan the cache)."""
        for path in sorted(self.root.glob("*/*.json")):
            if path.name.startswith(".") or path.name.endswith(".err.json"):
                continue
            entry = self._read(path, path.name[:-len(".json")])
            if entry is not None:
                yield entry

    def _claim_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.claim"

    def claim(self, key: str) -> bool:
        """Try to become the one process sending ``key``.

        Parameters
        ----------
        key : str
            A :func:`request_key`.

        Returns
        -------
        bool
            True when this process holds the claim now (also after taking over a stale one),
            False when another live process holds it.
        """
        path = self._claim_path(key)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            except FileExistsError:
                if not self._stale(path):
                    return False
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{_HOST} {os.getpid()} {time.time():.3f}\n")
            return True
        return False

    def claimed(self, key: str) -> bool:
        """True while a live process holds the claim of ``key``.

        Parameters
        ----------
        key : str
            A :func:`request_key`.

        Returns
        -------
        bool
            False when nobody holds it or its holder is gone.
        """
        path = self._claim_path(key)
        return path.exists() and not self._stale(path)

    def release(self, key: str) -> None:
        """Give the claim of ``key`` up (after its answer or final error was stored).

        Parameters
        ----------
        key : str
            A :func:`request_key`.
        """
        try:
            self._claim_path(key).unlink()
        except FileNotFoundError:
            pass

    @staticmethod
    def _stale(path: Path) -> bool:
        try:
            host, pid, stamp = path.read_text().split()
        except (OSError, ValueError):  # vanished, or torn by a kill mid-write
            try:
                return time.time() - path.stat().st_mtime > 5.0
            except OSError:
                return True
        if host == _HOST:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False
        return time.time() - float(stamp) > CLAIM_TTL_S

    def counts(self) -> dict:
        """``{"hits", "misses", "stored", "unreadable"}`` of this process.

        Returns
        -------
        dict of str to int
            The cache's counters.
        """
        return {"hits": self.hits, "misses": self.misses, "stored": self.stored,
                "unreadable": self.unreadable}
