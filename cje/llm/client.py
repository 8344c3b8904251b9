"""The one async client path for every OpenAI-compatible endpoint.

``LLMClient`` wraps ``openai.AsyncOpenAI`` (its own retries off) and adds, per
provider: a concurrency limit (``asyncio.Semaphore``), request- and token-per-minute
token buckets, retries with exponential backoff and full jitter that honour
``Retry-After`` (429, 408, 409, 5xx, timeouts, dropped connections, malformed
responses), fail-fast on 401/403/404 (``FatalAPIError`` stops the stage), no retry
on 400/413/422 (the row is recorded as an error; but when the first
``REFUSALS_BEFORE_STOP`` calls are all refused, the next call raises
``FatalAPIError``: a config problem, not a bad row), a JSON-lines call log without
secrets, and token/cost accounting per (stage, model).

Typical use inside a stage::

    log = CallLog("logs/api_calls.log"); acct = Accounting()
    with provider_endpoint(provider) as base_url:
        async def main():
            async with LLMClient(provider, base_url, stage="generate",
                                 call_log=log, accounting=acct) as client:
                res = await client.chat([{"role": "user", "content": "hi"}],
                                        model="m", prompt_id="p1", max_tokens=16)
                res.ok, res.value, res.error, res.usage
        asyncio.run(main())
    print(acct.format_summary())
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import openai

from cje.errors import CJEError
from cje.llm.calllog import Accounting, CallLog  # re-exported: part of this module's API
from cje.llm.config import ProviderConfig

RETRYABLE_STATUS = {408, 409, 425, 429}  # plus every status >= 500
FATAL_STATUS = {401, 403, 404}           # stop the whole stage at once
REFUSALS_BEFORE_STOP = 5  # 4xx on the first N calls of a client, no success: stop the stage


class FatalAPIError(CJEError):
    """A non-retryable provider error that makes every further call pointless
    (bad key, no permission, unknown model/endpoint). Carries the provider's message."""

    def __init__(self, provider: str, status: int, message: str):
        self.provider, self.status, self.provider_message = provider, status, message
        super().__init__(f"provider '{provider}' answered HTTP {status}: {message} "
                         "(stage stopped; finished records are kept in the cache)")


class MalformedResponse(Exception):
    """Raised by a response parser when the answer is unusable; the call is retried."""


@dataclass
class CallResult:
    """Outcome of one logical call (after retries).

    ``value``: what the parser returned (chat: the message text; completions: the
    first choice) or None on failure; ``error``: final error text (no secrets);
    ``usage``: ``{"prompt_tokens", "completion_tokens"}`` summed over attempts.
    """

    ok: bool
    value: Any = None
    error: str | None = None
    retries: int = 0
    latency_s: float = 0.0
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})


class RateLimiter:
    """Token bucket: ``per_minute`` units per minute, burst of ``burst_s`` seconds' worth.

    ``acquire(n)`` waits until ``n`` units are available (requests: n=1; tokens:
    the estimated prompt + max completion tokens). ``adjust(d)`` charges (d > 0) or
    refunds (d < 0) the difference once the true usage is known.
    """

    def __init__(self, per_minute: float, burst_s: float = 1.0):
        self.rate = float(per_minute) / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` units (capped at the bucket size) can be taken."""
        amount = min(float(amount), self.capacity)
        async with self._lock:
            while True:
                self._refill()
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)

    def adjust(self, delta: float) -> None:
        """Charge ``delta`` more units (negative: refund); the level may go below 0."""
        self._refill()
        self.level = min(self.capacity, self.level - delta)


@contextlib.contextmanager
def provider_endpoint(provider: ProviderConfig) -> Iterator[str]:
    """Yield the base_url to use for ``provider`` for the duration of a stage.

    ``kind: openai`` -> its ``base_url``. ``kind: local`` without ``base_url`` ->
    starts the embedded model server (``cje.llm.local_server``, imported lazily so
    the package works without llama-cpp) and stops it on exit; with ``base_url``
    (e.g. a server started by ``cje serve-local``) that server is used as is.
    """
    if provider.kind == "local" and not provider.base_url:
        from cje.llm.local_server import local_server
        with local_server(n_threads=provider.n_threads) as url:
            yield url
    else:
        yield str(provider.base_url)


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(exc.message)


def _retry_after(exc: Exception) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _usage(resp: Any) -> tuple[int, int]:
    u = getattr(resp, "usage", None)
    return (int(getattr(u, "prompt_tokens", 0) or 0), int(getattr(u, "completion_tokens", 0) or 0))


def chat_text(resp: Any) -> str:
    """Default chat parser: the first choice's message text (``MalformedResponse`` if absent)."""
    choices = getattr(resp, "choices", None)
    if not choices or getattr(choices[0], "message", None) is None:
        raise MalformedResponse("response has no choices[0].message")
    text = choices[0].message.content
    if not isinstance(text, str):
        raise MalformedResponse("choices[0].message.content is not a string")
    return text


def first_choice(resp: Any) -> Any:
    """Default completions parser: the first choice (``MalformedResponse`` if absent)."""
    choices = getattr(resp, "choices", None)
    if not choices or not isinstance(getattr(choices[0], "text", None), str):
        raise MalformedResponse("response has no choices[0].text")
    return choices[0]


class LLMClient:
    """Async client for one provider during one stage (see module docstring).

    Parameters: ``provider`` (limits, retries, costs), ``base_url`` (from
    ``provider_endpoint``), ``stage`` (name in logs/accounting), ``call_log``,
    ``accounting``. Use as ``async with`` (closes the HTTP pool). After a
    ``FatalAPIError`` every further call raises it again at once.
    """

    def __init__(self, provider: ProviderConfig, base_url: str, stage: str,
                 call_log: CallLog | None = None, accounting: Accounting | None = None):
        self.provider = provider
        self.stage = stage
        self.call_log = call_log or CallLog(None)
        self.accounting = accounting or Accounting()
        key = provider.api_key()
        self.call_log.secrets.add(key)
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0,
                                          timeout=provider.timeout_s)
        self._sem = asyncio.Semaphore(provider.max_concurrency)
        self._rpm = RateLimiter(provider.requests_per_minute) if provider.requests_per_minute else None
        self._tpm = RateLimiter(provider.tokens_per_minute) if provider.tokens_per_minute else None
        self.fatal: FatalAPIError | None = None
        self.n_ok = 0
        self.n_refused_in_a_row = 0  # 4xx answers (not retried) since the last success

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._client.close()

    async def chat(self, messages: list[dict], *, model: str, prompt_id: str,
                   max_tokens: int | None = None, temperature: float | None = None,
                   top_p: float | None = None, response_format: dict | None = None,
                   extra_body: dict | None = None,
                   parse: Callable[[Any], Any] = chat_text,
                   max_parse_retries: int | None = None) -> CallResult:
        """POST /chat/completions; ``value`` = ``parse(response)`` (default: message text)."""
        kw: dict[str, Any] = {"model": model, "messages": messages}
        for k, v in (("max_tokens", max_tokens), ("temperature", temperature),
                     ("top_p", top_p), ("response_format", response_format),
                     ("extra_body", extra_body)):
            if v is not None:
                kw[k] = v
        est = sum(len(str(m.get("content", ""))) for m in messages) // 4 + (max_tokens or 0)
        return await self._call(self._client.chat.completions.create, kw, model, prompt_id,
                                est, parse, max_parse_retries, debug_prompt=messages)

    async def complete(self, prompt: str, *, model: str, prompt_id: str,
                       max_tokens: int = 16, temperature: float | None = None,
                       top_p: float | None = None, echo: bool = False,
                       logprobs: int | None = None, stop: list[str] | None = None,
                       extra_body: dict | None = None,
                       parse: Callable[[Any], Any] = first_choice,
                       max_parse_retries: int | None = None) -> CallResult:
        """POST /completions (``echo``/``logprobs`` for teacher forcing and yes/no
        judging); ``value`` = ``parse(response)`` (default: the first choice)."""
        kw: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
        for k, v in (("temperature", temperature), ("top_p", top_p), ("logprobs", logprobs),
                     ("stop", stop), ("extra_body", extra_body)):
            if v is not None:
                kw[k] = v
        if echo:
            kw["echo"] = True
        est = len(prompt) // 4 + max_tokens
        return await self._call(self._client.completions.create, kw, model, prompt_id,
                                est, parse, max_parse_retries, debug_prompt=prompt)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.provider.retry_backoff_max_s,
                      self.provider.retry_backoff_s * (2 ** attempt))
        delay = random.uniform(0.0, ceiling)  # full jitter
        return max(delay, retry_after) if retry_after is not None else delay

    async def _call(self, create: Callable, kw: dict, model: str, prompt_id: str,
                    est_tokens: int, parse: Callable[[Any], Any],
                    max_parse_retries: int | None, debug_prompt: Any) -> CallResult:
        p = self.provider
        total = {"prompt_tokens": 0, "completion_tokens": 0}
        t_start = time.monotonic()
        parse_failures = 0
        attempt = 0
        while True:
            if self.fatal:
                raise self.fatal
            if self._rpm:
                await self._rpm.acquire(1)
            if self._tpm:
                await self._tpm.acquire(est_tokens)
            t0 = time.monotonic()
            retry_after = None
            status, error, value, http = "ok", None, None, None
            async with self._sem:
                try:
                    resp = await create(**kw)
                    pt, ct = _usage(resp)
                    total["prompt_tokens"] += pt
                    total["completion_tokens"] += ct
                    if self._tpm:
                        self._tpm.adjust(pt + ct - est_tokens)
                    value = parse(resp)
                except MalformedResponse as exc:
                    parse_failures += 1
                    status, error = "retry", f"malformed response: {exc}"
                    if max_parse_retries is not None and parse_failures > max_parse_retries:
                        status = "error"
                except openai.APIStatusError as exc:
                    http = exc.status_code
                    error = f"HTTP {http}: {_provider_message(exc)}"
                    if http in FATAL_STATUS:
                        status = "fatal"
                    elif http in RETRYABLE_STATUS or http >= 500:
                        status, retry_after = "retry", _retry_after(exc)
                    else:
                        status = "error"
                except openai.APITimeoutError:
                    status, error = "retry", f"timeout after {p.timeout_s} s"
                except openai.APIConnectionError as exc:
                    cause = exc.__cause__ or exc
                    status, error = "retry", f"connection error: {type(cause).__name__}: {cause}"
                except (openai.APIResponseValidationError, ValueError) as exc:
                    status, error = "retry", f"malformed response: {type(exc).__name__}: {exc}"
            latency = time.monotonic() - t0
            if status == "retry" and attempt >= p.max_retries:
                status = "error"
                error = f"{error} (gave up after {attempt} retries)"
            error = self.call_log.scrub(error) if error else None
            debug = {"debug_prompt": debug_prompt,
                     "debug_answer": None if value is None else str(value)} \
                if self.call_log.debug else {}
            self.call_log.write(stage=self.stage, provider=p.name, model=model,
                                prompt_id=prompt_id, latency_s=round(latency, 4),
                                prompt_tokens=total["prompt_tokens"],
                                completion_tokens=total["completion_tokens"],
                                status=status, retries=attempt, error=error, http_status=http,
                                **debug)
            if status == "fatal":
                self.fatal = FatalAPIError(p.name, http or 0,
                                           self.call_log.scrub(error.split(": ", 1)[-1]))
                self.accounting.add(self.stage, model, p, False, total["prompt_tokens"],
                                    total["completion_tokens"], attempt)
                raise self.fatal
            if status == "ok":
                self.n_ok += 1
                self.n_refused_in_a_row = 0
            elif status == "error" and http is not None and 400 <= http < 500:
                self.n_refused_in_a_row += 1
                if self.n_ok == 0 and self.n_refused_in_a_row >= REFUSALS_BEFORE_STOP:
                    self.fatal = FatalAPIError(
                        p.name, http, f"the first {self.n_refused_in_a_row} calls were all "
                        f"refused; last: {error.split(': ', 1)[-1]} (a config problem, e.g. an "
                        "unsupported parameter or model)")
            if status in ("ok", "error"):
                self.accounting.add(self.stage, model, p, status == "ok",
                                    total["prompt_tokens"], total["completion_tokens"], attempt)
                return CallResult(ok=status == "ok", value=value, error=error, retries=attempt,
                                  latency_s=time.monotonic() - t_start, usage=total)
            await asyncio.sleep(self._backoff(attempt, retry_after))
            attempt += 1


def run_with_client(provider: ProviderConfig, stage: str, api_log: str | Path | None,
                    body: Callable[[LLMClient], Any], debug: bool = False) -> Any:
    """Run ``await body(client)`` for one stage and return its result.

    Opens the provider's endpoint (starting the local server if needed), creates
    the ``LLMClient`` with a ``CallLog(api_log)``, and on every exit path prints
    the token/cost summary to stderr and appends it to the call log as
    ``{"event": "stage_summary", "stage", "totals": [...]}``. SIGTERM cancels the
    stage cleanly (the side cache is flushed) and raises ``CJEError``.
    """
    call_log = CallLog(api_log, debug=debug)
    acct = Accounting()

    terminated = []

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_sigterm() -> None:  # Snakemake/SLURM cancel: flush the cache, then stop
            terminated.append(True)
            task.cancel()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        async with LLMClient(provider, base_url, stage, call_log, acct) as client:
            return await body(client)

    try:
        with provider_endpoint(provider) as base_url:
            try:
                return asyncio.run(main())
            except asyncio.CancelledError:
                if terminated:
                    raise CJEError(f"{stage}: terminated by SIGTERM; finished rows are kept "
                                   "in the side cache, rerun to resume") from None
                raise
    finally:
        call_log.write(event="stage_summary", stage=stage, totals=acct.summary())
        print(f"[{stage}] {acct.format_summary()}", file=sys.stderr)
