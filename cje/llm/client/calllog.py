"""What API calls did: the JSON-lines call log and token/cost accounting.

``CallLog`` writes ``logs/api_calls.log`` (one line per attempt, no secrets);
``Accounting`` sums tokens and estimated cost per (stage, model). Both are used
by ``cje.llm.client.http.LLMClient`` (and re-exported there).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cje.llm.config import ProviderConfig
from cje.llm.scrub import Scrubber


class CallLog:
    """Append-only JSON-lines log of API attempts (``logs/api_calls.log``).

    One line per attempt: ``ts, stage, provider, model, prompt_id, latency_s,
    prompt_tokens, completion_tokens, status`` (``ok``/``retry``/``error``/``fatal``),
    ``retries`` (attempt index), ``reason``, ``wait_s``, the attempt's own tokens and
    cost, ``error`` (docs/llm.md). Never the API key: every fragment of >= 8
    characters of a registered secret (``scrubber.add``) is scrubbed from every line;
    never prompts or answers unless ``debug``. Each line is one ``write`` on an
    O_APPEND file, so shards may share the file.

    Parameters
    ----------
    path : str, Path or None
        The log file (None: nothing is written); its folder is created.
    debug : bool, default=False
        Keep ``debug_*`` fields (prompts and answers).
    """

    def __init__(self, path: str | Path | None, debug: bool = False):
        self.path = Path(path) if path else None
        self.debug = debug
        self.scrubber = Scrubber()
        self._lock = threading.Lock()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def scrub(self, text: str, key_like: bool = False) -> str:
        """``text`` without registered secrets (any fragment of >= 8 characters).

        With ``key_like``, also without values that look like keys (``cje.llm.scrub``).

        Parameters
        ----------
        text : str
            Any text.
        key_like : bool, default=False
            Also scrub key-looking values.

        Returns
        -------
        str
            The scrubbed text.
        """
        return self.scrubber.scrub(text, key_like=key_like)

    def write(self, **fields: Any) -> None:
        """Append one record (a ``ts`` is added); drops ``debug_*`` fields unless debug.

        Parameters
        ----------
        **fields
            The record's fields (JSON-serialisable, or converted with ``str``).
        """
        if not self.path:
            return
        if not self.debug:
            fields = {k: v for k, v in fields.items() if not k.startswith("debug_")}
        rec = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields}
        line = self.scrub(json.dumps(rec, default=str)) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)


class Accounting:
    """Token and estimated-cost totals per (stage, model).

    cost = prompt_tokens * cost_per_million_input_tokens / 1e6
         + completion_tokens * cost_per_million_output_tokens / 1e6
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict] = {}

    def add(self, stage: str, model: str, provider: ProviderConfig, ok: bool,
            prompt_tokens: int, completion_tokens: int, retries: int, cached: bool = False,
            timeouts: int = 0, wait_s: float = 0.0) -> None:
        """Add one finished logical call.

        Parameters
        ----------
        stage : str
            The stage.
        model : str
            The model.
        provider : ProviderConfig
            Its provider (name and prices).
        ok : bool
            Whether the call succeeded.
        prompt_tokens, completion_tokens : int
            Its tokens.
        retries : int
            Its retries.
        cached : bool, default=False
            Answered by the request cache, not sent; its tokens are not counted again.
        timeouts : int, default=0
            Attempts that timed out.
        wait_s : float, default=0.0
            Backoff waited between its attempts.
        """
        r = self.rows.setdefault((stage, model), dict(
            stage=stage, model=model, provider=provider.name, calls=0, ok=0, errors=0,
            cached=0, retries=0, timeouts=0, retry_wait_s=0.0, prompt_tokens=0,
            completion_tokens=0, cost_usd=0.0))
        r["calls"] += 1
        r["ok" if ok else "errors"] += 1
        r["cached"] += int(cached)
        r["retries"] += retries
        r["timeouts"] += timeouts
        r["retry_wait_s"] += wait_s
        r["prompt_tokens"] += prompt_tokens
        r["completion_tokens"] += completion_tokens
        r["cost_usd"] += (prompt_tokens * provider.cost_per_million_input_tokens
                          + completion_tokens * provider.cost_per_million_output_tokens) / 1e6

    def summary(self) -> list[dict]:
        """Totals as a list of dicts, one per (stage, model).

        Returns
        -------
        list of dict
            Copies of the totals.
        """
        return [dict(r) for r in self.rows.values()]

    def format_summary(self) -> str:
        """Human-readable lines, e.g. ``generate gemma: 40 calls (40 ok, 0 errors) ...``.

        Returns
        -------
        str
            ``no API calls`` when nothing was added.
        """
        lines = []
        for r in self.rows.values():
            lines.append(f"{r['stage']} {r['model']} [{r['provider']}]: {r['calls']} calls "
                         f"({r['ok']} ok, {r['errors']} errors, {r['cached']} from the request "
                         f"cache, {r['retries']} retries, {r['timeouts']} timeouts, "
                         f"{r['retry_wait_s']:.1f} s backoff), "
                         f"{r['prompt_tokens']} prompt + {r['completion_tokens']} completion "
                         f"tokens, est. cost ${r['cost_usd']:.4f}")
        return "\n".join(lines) if lines else "no API calls"


def run_cost_summary(path: str | Path) -> list[dict]:
    """Sum every ``stage_summary`` line of a call log per (stage, model).

    The whole run's calls, errors, retries, tokens and estimated cost (reruns included:
    money spent). Torn lines (a killed job) are skipped.

    Parameters
    ----------
    path : str or Path
        The call log.

    Returns
    -------
    list of dict
        One dict per (stage, model), sorted; an empty list for a missing log.
    """
    path = Path(path)
    if not path.exists():
        return []
    keys = ("calls", "ok", "errors", "cached", "retries", "timeouts", "retry_wait_s",
            "prompt_tokens", "completion_tokens", "cost_usd")
    total: dict[tuple[str, str], dict] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if '"stage_summary"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line of a killed job
            for row in rec.get("totals", []):
                t = total.setdefault((row["stage"], row["model"]), {
                    "stage": row["stage"], "model": row["model"], "provider": row["provider"],
                    **{k: 0 for k in keys}})
                for k in keys:
                    t[k] += row.get(k, 0)
    return [total[k] for k in sorted(total)]
