"""Provider rate limits (requests and tokens per minute) that hold across processes.

One algorithm, two places to keep its state:

- ``RateLimits(provider)``: state in this process (one job);
- ``RateLimits(provider, state_dir=DIR)``: state in ``DIR/<provider-id>.limits``,
  read and updated under an exclusive POSIX lock (``fcntl.lockf``), so every
  process of every job that uses the same provider and the same ``DIR`` shares one
  budget: 8 concurrent Snakemake or SLURM jobs together send at most the limit.
  ``DIR`` may be on a shared file system if it supports POSIX locks (NFSv4,
  Lustre with ``flock``/``localflock`` on one node, GPFS); the machines' clocks
  must agree (NTP), since the schedule is kept in wall-clock time.

Algorithm: a token bucket kept as a *schedule* (GCRA, the "virtual scheduling"
form; Turner 1986, ITU-T I.371). For each limit with ``L`` units per window of
``W`` seconds (``rate_limit_window_s``, default 60: "per minute" means in every
sliding 60-second window), the bucket refills at ``r = L / (W + b + d)`` units per
second and holds ``C = r * b`` units (burst ``b`` = ``BURST_S``, at most ``W / 10``;
``d`` = ``LAG_S``, the time a reserved request may take to reach the provider:
event-loop lag on a busy machine). Requests reaching the provider in any window of
length ``W`` were reserved in a window of length ``W + d``, which admits at most
``C + r (W + d) = L`` units: the limit holds in every sliding window, not only on
average (for W = 60 s the bucket runs at 0.975 of the limit). A caller that wakes
up more than ``d / 2`` after its reserved start (a starved process) gives the slot
up and reserves a new one rather than sending late. The state is the
"theoretical arrival time" ``TAT`` of each bucket; a request of ``n`` units may
start at ``t = max(now, TAT - (C - min(n, C)) / r)`` and moves ``TAT`` to
``max(TAT, t) + n / r``. Each caller *reserves* its start time under the lock and
then sleeps outside it, so callers are served first come, first served, with one
lock round trip per request and no polling.

Tokens: a request is charged ``len(prompt characters) // 4 + max_tokens`` before
it is sent (what providers such as OpenAI count against the limit); when the
reported usage is larger, the difference is charged afterwards (``charge``);
unused ``max_tokens`` are not refunded, as providers do not refund them either.

References
----------
Turner, J. S. (1986). New directions in communications (or which way to the information
age?). IEEE Communications Magazine, 24(10), 8-15 (the leaky bucket).
ITU-T Recommendation I.371. Traffic control and congestion control in B-ISDN (the
Generic Cell Rate Algorithm).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import os
import threading
import time
from pathlib import Path

BURST_S = 1.0
_PROCESS_LOCK = threading.Lock()
LAG_S = 0.5  # allowed time between a reserved start and the request reaching the provider


class _Bucket:
    """Rate ``r`` units/s and capacity ``C`` units derived from ``limit`` per ``window_s``."""

    def __init__(self, limit: float, window_s: float):
        burst = min(BURST_S, window_s / 10.0)
        self.rate = float(limit) / (window_s + burst + LAG_S)
        self.capacity = max(1.0, self.rate * burst)

    def earliest(self, tat: float, now: float, amount: float) -> float:
        """Earliest start at or after ``now`` of ``amount`` units, given the bucket's ``tat``."""
        return max(now, tat - (self.capacity - min(amount, self.capacity)) / self.rate)


def provider_limit_id(provider) -> str:
    """File-name id of a provider's shared budget: ``<name>-<8 hex of kind|base_url>``.

    Parameters
    ----------
    provider : ProviderConfig
        The provider.

    Returns
    -------
    str
        The id.
    """
    digest = hashlib.sha256(f"{provider.kind}|{provider.base_url or ''}".encode()).hexdigest()[:8]
    return f"{provider.name}-{digest}"


class RateLimits:
    """Requests- and tokens-per-window limits of one provider (either may be None = unlimited).

    ``await acquire(tokens)`` waits until one more request of ``tokens`` estimated
    tokens may start; ``charge(extra_tokens)`` charges tokens found afterwards.
    With ``state_dir`` the budget is shared by every process using that folder
    (module docstring); without it, by the callers in this process.

    Parameters
    ----------
    requests_per_minute : float or None
        Requests per minute (None or 0 = unlimited).
    tokens_per_minute : float or None
        Tokens per minute (None or 0 = unlimited).
    window_s : float, default=60.0
        The sliding window; the limits are scaled to it (``limit * window_s / 60``).
    state_file : str, PathLike or None, default=None
        The shared state file (None: state in this process).
    """

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None,
                 window_s: float = 60.0, state_file: str | os.PathLike | None = None):
        self.buckets: dict[str, _Bucket] = {}
        if requests_per_minute:
            self.buckets["requests"] = _Bucket(requests_per_minute * window_s / 60.0, window_s)
        if tokens_per_minute:
            self.buckets["tokens"] = _Bucket(tokens_per_minute * window_s / 60.0, window_s)
        self.state_file = Path(state_file) if state_file else None
        self._tat: dict[str, float] = {}
        self.waited_s = 0.0
        self.late = 0
        if self.state_file:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_provider(cls, provider, state_dir: str | os.PathLike | None = None) -> "RateLimits":
        """The limits of a ``ProviderConfig``; shared through ``state_dir`` when given.

        Parameters
        ----------
        provider : ProviderConfig
            The provider.
        state_dir : str, PathLike or None, default=None
            The folder of the shared state (``DIR/<provider-id>.limits``).

        Returns
        -------
        RateLimits
        """
        state = Path(state_dir) / f"{provider_limit_id(provider)}.limits" if state_dir else None
        return cls(provider.requests_per_minute, provider.tokens_per_minute,
                   provider.rate_limit_window_s, state)

    def __bool__(self) -> bool:
        return bool(self.buckets)

    def _update(self, amounts: dict[str, float], now: float) -> float:
        """Reserve ``amounts`` on the buckets in ``self._tat`` (in place); return the start time."""
        start = now
        for name, amount in amounts.items():
            b = self.buckets.get(name)
            if b is not None and amount > 0:
                start = max(start, b.earliest(self._tat.get(name, 0.0), now, amount))
        for name, amount in amounts.items():
            if name in self.buckets and amount > 0:
                tat = self._tat.get(name, 0.0)
                self._tat[name] = max(tat, start) + amount / self.buckets[name].rate
        return start

    def _reserve_shared(self, amounts: dict[str, float]) -> float:
        # POSIX locks belong to the process: threads of one process must not contend for
        # it through the kernel (its deadlock detection then fails them with EDEADLK)
        with _PROCESS_LOCK:
            return self._reserve_locked(amounts)

    def _reserve_locked(self, amounts: dict[str, float]) -> float:
        fd = os.open(self.state_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX)
                    break
                except OSError as exc:  # EDEADLK: two processes' lock waits crossed; retry
                    if exc.errno != errno.EDEADLK:
                        raise
                    time.sleep(0.001)
            raw = os.pread(fd, 4096, 0)
            try:
                self._tat = {k: float(v) for k, v in json.loads(raw).items()} if raw else {}
            except (ValueError, AttributeError):
                self._tat = {}  # a torn state (killed writer): start from an empty schedule
            start = self._update(amounts, time.time())
            data = json.dumps(self._tat).encode()
            os.pwrite(fd, data.ljust(len(raw), b" "), 0)
            fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return start

    async def _reserve(self, amounts: dict[str, float]) -> None:
        if not self.buckets:
            return
        while True:
            if self.state_file is None:
                start = self._update(amounts, time.time())
            else:
                start = await asyncio.to_thread(self._reserve_shared, amounts)
            delay = start - time.time()
            if delay > 0:
                self.waited_s += delay
                await asyncio.sleep(delay)
            if time.time() - start <= LAG_S / 2:
                return
            self.late += 1  # woke too late: sending now could bunch requests; take a new slot

    async def acquire(self, tokens: float = 0.0) -> None:
        """Wait until one request of ``tokens`` estimated tokens may be sent.

        Parameters
        ----------
        tokens : float, default=0.0
            The request's estimated tokens.
        """
        await self._reserve({"requests": 1.0, "tokens": float(tokens)})

    async def charge(self, extra_tokens: float) -> None:
        """Charge ``extra_tokens`` (> 0) found in the reported usage after the call.

        Parameters
        ----------
        extra_tokens : float
            Tokens beyond the estimate (nothing is charged for <= 0).
        """
        if extra_tokens > 0 and "tokens" in self.buckets:
            if self.state_file is None:
                self._update({"tokens": float(extra_tokens)}, time.time())
            else:
                await asyncio.to_thread(self._reserve_shared, {"tokens": float(extra_tokens)})
