"""Reading and counting the simulated provider's request log (``provider_sim.py --log``).

One JSON line per request: ``t``, ``done``, ``kind``, ``key``, ``model``, ``tokens``,
``status``, ``fault`` (see provider_sim's docstring). Used by the CI-sized test, the
cross-job rate-limit test and ``benchmarks/fullscale.py``.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_log(path: str | Path) -> list[dict]:
    """The request log's records (a torn last line is skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def peak_in_window(times: list[float], weights: list[float], window_s: float) -> float:
    """Largest sum of ``weights`` of events whose ``times`` fall in any window of ``window_s``
    (two pointers over the sorted times)."""
    order = sorted(range(len(times)), key=times.__getitem__)
    best = total = 0.0
    j = 0
    for i in order:
        total += weights[i]
        while times[order[j]] <= times[i] - window_s:
            total -= weights[order[j]]
            j += 1
        best = max(best, total)
    return best


def summarize_log(records: list[dict], rpm: float | None = None, tpm: float | None = None,
                  window_s: float = 60.0) -> dict:
    """Counts of a request log: by status, distinct keys, keys answered 200 twice or more,
    and the peak requests/tokens that *arrived* (rejected ones included: the load the
    clients offered) in any ``window_s`` window, against the limits scaled to it."""
    by_status: dict[str, int] = {}
    ok_per_key: dict[str, int] = {}
    for r in records:
        by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
        if r["status"] == 200:
            ok_per_key[r["key"]] = ok_per_key.get(r["key"], 0) + 1
    admitted = [r for r in records if r["status"] != 429]
    times = [r["t"] for r in records]
    peak_req = peak_in_window(times, [1.0] * len(times), window_s)
    peak_tok = peak_in_window(times, [float(r["tokens"]) for r in records], window_s)
    return {"requests": len(records), "by_status": by_status,
            "distinct_keys": len({r["key"] for r in records}),
            "keys_answered": len(ok_per_key),
            "keys_answered_twice": sum(1 for n in ok_per_key.values() if n > 1),
            "window_s": window_s,
            "peak_requests_in_window": peak_req,
            "request_limit_in_window": None if rpm is None else rpm * window_s / 60,
            "peak_tokens_in_window": peak_tok,
            "token_limit_in_window": None if tpm is None else tpm * window_s / 60,
            "first_t": min(times, default=None), "last_done": max(
                (r["done"] for r in admitted), default=None)}
