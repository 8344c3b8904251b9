"""The one async client path for every OpenAI-compatible endpoint.

``LLMClient`` wraps ``openai.AsyncOpenAI`` (its own retries off) and adds, per
provider:

- the per-request answer cache (``cje.llm.client.cache``): a call whose answer is
  cached is not sent, costs nothing and waits for no limit; a call identical to one
  already on its way (in this process, or claimed by another job) waits for that
  one's answer; every ok answer is stored before the call returns;
- a concurrency limit (``asyncio.Semaphore``) and request/token rate limits
  (``cje.llm.client.ratelimit``; shared across processes with a state folder);
- the retry policy (``cje.llm.client.retry``): capped ``Retry-After``, a waiting budget for
  429, timeouts counted separately, fail-fast on 401/403/404 and on a used-up quota
  (429 ``insufficient_quota``) (``FatalAPIError`` stops the stage), no retry on
  400/413/422 (the row is an error; but when the first ``REFUSALS_BEFORE_STOP`` calls
  are all refused, the next call raises ``FatalAPIError``: a config problem, not a bad
  row);
- the JSON-lines call log (one line per attempt, with what the attempt cost and
  how long the client waited after it), scrubbed of every fragment of the key
  (``cje.llm.scrub``), and token/cost accounting per (stage, model).

The endpoint is opened lazily, at the first call that is not cached: a rerun whose
answers are all cached starts no local server and needs no API key. A key that is set
but malformed (a trailing newline, a space, a curly quote) is a ``ConfigError`` when the
client is built, before any request. A query string in ``base_url`` (Azure's
``?api-version=...``) is split off and sent with every request (``default_query``);
credentials in it are refused by the config (``cje.llm.config.check_base_url``). The
HTTP stack's log lines lose URL credentials, query values and the key
(``cje.llm.scrub.scrub_http_logs``).

Typical use inside a stage::

    async def body(client):
        res = await client.chat([{"role": "user", "content": "hi"}], model="m",
                                prompt_id="p1", max_tokens=16)
        res.ok, res.value, res.error, res.usage, res.cached
    run_with_client(provider, "generate:base", "logs/api_calls.log", body,
                    request_cache="data/cache/requests", rate_limit_dir=".cje/rate_limits")
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion

from cje.errors import CJEError
from cje.llm.client.cache import RequestCache, provider_identity, request_key
from cje.llm.client.calllog import Accounting, CallLog
from cje.llm.client.ratelimit import RateLimits
from cje.llm.client.retry import (
    FATAL,
    RATE_LIMITED,
    REFUSED,
    TIMEOUT,
    TRANSIENT,
    RateLimitedError,
    RetryState,
    classify_status,
    fatal_hint,
)
from cje.llm.config import ProviderConfig, split_base_url
from cje.llm.scrub import scrub_http_logs

REFUSALS_BEFORE_STOP = 5  # 4xx on the first N calls of a client, no success: stop the stage
_RESPONSE_TYPES = {"chat": ChatCompletion, "completions": Completion}


class FatalAPIError(CJEError):
    """A non-retryable provider error that makes every further call pointless.

    Bad key, no permission, unknown model/endpoint. Carries the provider's message.

    Parameters
    ----------
    provider : str
        The provider's name.
    status : int
        The HTTP status.
    message : str
        The provider's message.
    """

    def __init__(self, provider: str, status: int, message: str):
        self.provider, self.status, self.provider_message = provider, status, message
        super().__init__(f"provider '{provider}' answered HTTP {status}: {message} "
                         "(stage stopped; finished answers are kept in the request cache)")


class MalformedResponse(Exception):
    """Raised by a response parser when the answer is unusable; the call is retried.

    Parameters
    ----------
    message : str
        What is wrong with the answer.
    raw : str or None, default=None
        The answer text the parser rejected (kept in the row if the call gives up).
    """

    def __init__(self, message: str, raw: str | None = None):
        super().__init__(message)
        self.raw = raw


@dataclass
class CallResult:
    """Outcome of one logical call (after retries).

    Parameters
    ----------
    ok : bool
        Whether the call succeeded.
    value : object, default=None
        What the parser returned (chat: the message text; completions: the
        first choice) or None on failure.
    error : str or None, default=None
        Final error text (no secrets).
    retries : int, default=0
        Retries made.
    latency_s : float, default=0.0
        Latency.
    usage : dict
        ``{"prompt_tokens", "completion_tokens"}`` summed over attempts (as reported).
    raw : str or None, default=None
        The last answer a parser rejected (None otherwise).
    cached : bool, default=False
        Answered from the request cache (nothing sent).
    """

    ok: bool
    value: Any = None
    error: str | None = None
    retries: int = 0
    latency_s: float = 0.0
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    raw: str | None = None
    cached: bool = False


@contextlib.contextmanager
def provider_endpoint(provider: ProviderConfig) -> Iterator[str]:
    """Yield the base_url to use for ``provider`` for the duration of a stage.

    ``kind: openai`` -> its ``base_url``. ``kind: local`` without ``base_url`` ->
    starts the embedded model server (``cje.llm.local.server``, imported lazily so
    the package works without llama-cpp) and stops it on exit; with ``base_url``
    (e.g. a server started by ``cje serve-local``) that server is used as is.

    Parameters
    ----------
    provider : ProviderConfig
        The provider.

    Yields
    ------
    str
        The base URL.
    """
    if provider.kind == "local" and not provider.base_url:
        # the embedded server (and llama-cpp) only for a local provider without base_url
        from cje.llm.local.server import local_server
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


def _error_code(exc: openai.APIStatusError) -> str | None:
    """The provider's error code (``error.code``, else ``error.type``) of an error answer."""
    body = exc.body
    if not isinstance(body, dict):
        return None
    err = body.get("error") if isinstance(body.get("error"), dict) else body
    code = err.get("code") or err.get("type")
    return str(code) if code is not None else None


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


def _set_fields(**fields: Any) -> dict[str, Any]:
    """The request fields that are set (not None), in the given order: only those are sent."""
    return {k: v for k, v in fields.items() if v is not None}


def chat_text(resp: Any) -> str:
    """Default chat parser: the first choice's message text.

    Parameters
    ----------
    resp : ChatCompletion
        The provider's answer.

    Returns
    -------
    str
        The message text.

    Raises
    ------
    MalformedResponse
        The answer has no ``choices[0].message`` or its content is not a string.
    """
    choices = getattr(resp, "choices", None)
    if not choices or getattr(choices[0], "message", None) is None:
        raise MalformedResponse("response has no choices[0].message")
    text = choices[0].message.content
    if not isinstance(text, str):
        raise MalformedResponse("choices[0].message.content is not a string")
    return text


def first_choice(resp: Any) -> Any:
    """Default completions parser: the first choice.

    Parameters
    ----------
    resp : Completion
        The provider's answer.

    Returns
    -------
    object
        ``choices[0]``.

    Raises
    ------
    MalformedResponse
        The answer has no ``choices[0].text``.
    """
    choices = getattr(resp, "choices", None)
    if not choices or not isinstance(getattr(choices[0], "text", None), str):
        raise MalformedResponse("response has no choices[0].text")
    return choices[0]


class LLMClient:
    """Async client for one provider during one stage (see module docstring).

    Use as ``async with``. After a ``FatalAPIError`` or ``RateLimitedError`` every further
    call raises it again.

    Parameters
    ----------
    provider : ProviderConfig
        Limits, retries, costs.
    base_url : str or None, default=None
        None: opened at the first uncached call by ``opener()``.
    stage : str, default=''
        Name in logs/accounting.
    call_log : CallLog or None, default=None
        The call log (None: none).
    accounting : Accounting or None, default=None
        Token/cost totals (None: a new one).
    cache : RequestCache or None, default=None
        The request cache.
    limits : RateLimits or None, default=None
        Default: the provider's limits in this process.
    opener : callable or None, default=None
        A blocking callable returning the URL.
    """

    def __init__(self, provider: ProviderConfig, base_url: str | None = None, stage: str = "",
                 call_log: CallLog | None = None, accounting: Accounting | None = None, *,
                 cache: RequestCache | None = None, limits: RateLimits | None = None,
                 opener: Callable[[], str] | None = None):
        self.provider = provider
        self.stage = stage
        self.call_log = call_log or CallLog(None)
        self.accounting = accounting or Accounting()
        self.cache = cache
        self.limits = limits if limits is not None else RateLimits.for_provider(provider)
        self._base_url, self._opener = base_url, opener
        self._identity = provider_identity(provider)
        self._client: openai.AsyncOpenAI | None = None
        self._open_lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(provider.max_concurrency)
        self._inflight: dict[str, asyncio.Future] = {}  # key -> result of a request on its way
        self.fatal: CJEError | None = None
        self.n_ok = 0
        self.n_refused_in_a_row = 0  # 4xx answers (not retried) since the last success
        provider.check_api_key_if_set()  # a malformed key: ConfigError before any request

    @contextlib.contextmanager
    def stage_as(self, stage: str) -> Iterator[None]:
        """Log and account the calls made inside the block under ``stage``.

        The preflight (:mod:`cje.llm.stages.preflight`) uses it so its requests are a row
        of their own in the call log and the stage summary, not the stage's rows.

        Parameters
        ----------
        stage : str
            The name in the call log and the accounting while the block runs.

        Yields
        ------
        None
        """
        before, self.stage = self.stage, stage
        try:
            yield
        finally:
            self.stage = before

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()

    async def _open(self) -> openai.AsyncOpenAI:
        async with self._open_lock:
            if self._client is None:
                key = self.provider.api_key()  # ConfigError naming the variable when unset
                self.call_log.scrubber.add(key)
                url = self._base_url or await asyncio.to_thread(self._opener)
                base, query = split_base_url(url)  # ?api-version=...: sent with every request
                secrets = [value for name, value in query.items()  # a query value may be a key
                           if len(value) >= 8 and name.lower() not in ("api-version", "api_version")]
                for secret in secrets:
                    self.call_log.scrubber.add(secret)
                scrub_http_logs(key if key != "not-needed" else None, *secrets)
                self._client = openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0,
                                                  default_query=query or None,
                                                  timeout=self.provider.timeout_s)
        return self._client

    async def chat(self, messages: list[dict], *, model: str, prompt_id: str,
                   max_tokens: int | None = None, temperature: float | None = None,
                   top_p: float | None = None, response_format: dict | None = None,
                   extra_body: dict | None = None,
                   parse: Callable[[Any], Any] = chat_text,
                   max_parse_retries: int | None = None, sample: Any = None) -> CallResult:
        """POST /chat/completions; ``value`` = ``parse(response)`` (default: message text).

        Parameters
        ----------
        messages : list of dict
            The chat messages.
        model : str
            The model.
        prompt_id : str
            For the call log.
        max_tokens, temperature, top_p, response_format, extra_body : optional
            Sent only when not None.
        parse : callable, default=chat_text
            Turns the answer into ``value``; raising :class:`MalformedResponse` retries the call.
        max_parse_retries : int or None, default=None
            Give up after this many rejected answers (None: the provider's retry budget).
        sample : object, default=None
            Distinguishes independent samples of an identical request (cache key).

        Returns
        -------
        CallResult
        """
        kw: dict[str, Any] = {"model": model, "messages": messages,
                              **_set_fields(max_tokens=max_tokens, temperature=temperature,
                                            top_p=top_p, response_format=response_format,
                                            extra_body=extra_body)}
        est = sum(len(str(m.get("content", ""))) for m in messages) // 4 + (max_tokens or 0)
        return await self._call("chat", kw, model, prompt_id, est, parse, max_parse_retries,
                                messages, sample)

    async def complete(self, prompt: str, *, model: str, prompt_id: str,
                       max_tokens: int = 16, temperature: float | None = None,
                       top_p: float | None = None, echo: bool = False,
                       logprobs: int | None = None, stop: list[str] | None = None,
                       extra_body: dict | None = None,
                       parse: Callable[[Any], Any] = first_choice,
                       max_parse_retries: int | None = None, sample: Any = None) -> CallResult:
        """POST /completions (``echo``/``logprobs`` for teacher forcing and yes/no judging).

        Parameters
        ----------
        prompt : str
            The prompt text.
        model : str
            The model.
        prompt_id : str
            For the call log.
        max_tokens : int, default=16
            Longest completion.
        temperature, top_p, logprobs, stop, extra_body : optional
            Sent only when not None.
        echo : bool, default=False
            Return the prompt's tokens too (teacher forcing).
        parse : callable, default=first_choice
            Turns the answer into ``value``; raising :class:`MalformedResponse` retries the call.
        max_parse_retries : int or None, default=None
            Give up after this many rejected answers (None: the provider's retry budget).
        sample : object, default=None
            Distinguishes independent samples of an identical request (cache key).

        Returns
        -------
        CallResult
        """
        kw: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens,
                              **_set_fields(temperature=temperature, top_p=top_p,
                                            logprobs=logprobs, stop=stop, extra_body=extra_body)}
        if echo:
            kw["echo"] = True
        est = len(prompt) // 4 + max_tokens
        return await self._call("completions", kw, model, prompt_id, est, parse,
                                max_parse_retries, prompt, sample)

    def _from_cache(self, key: str, endpoint: str, model: str,
                    parse: Callable[[Any], Any]) -> CallResult | None:
        entry = self.cache.get(key)
        if entry is None:
            return None
        if entry.get("status") != "ok":
            self.accounting.add(self.stage, model, self.provider, False, 0, 0, 0, cached=True)
            return CallResult(ok=False, error=entry.get("error"), cached=True)
        resp = _RESPONSE_TYPES[endpoint].construct(**entry["response"])
        try:
            value = parse(resp)
        except MalformedResponse:  # stored under another parser; ask again
            return None
        pt, ct = _usage(resp)
        self.accounting.add(self.stage, model, self.provider, True, 0, 0, 0, cached=True)
        return CallResult(ok=True, value=value, usage={"prompt_tokens": pt, "completion_tokens": ct},
                          cached=True)

    async def _call(self, endpoint: str, kw: dict, model: str, prompt_id: str, est_tokens: int,
                    parse: Callable[[Any], Any], max_parse_retries: int | None,
                    debug_prompt: Any, sample: Any) -> CallResult:
        key = request_key(self._identity, endpoint, kw, sample) if self.cache is not None else None
        if key is None:
            return await self._send(endpoint, kw, model, prompt_id, est_tokens, parse,
                                    max_parse_retries, debug_prompt, None)
        hit = self._from_cache(key, endpoint, model, parse)
        if hit is not None:
            return hit
        if key in self._inflight:  # the same request is on its way for another row: share it
            res = await asyncio.shield(self._inflight[key])
            self.accounting.add(self.stage, model, self.provider, res.ok, 0, 0, 0, cached=True)
            return dataclasses.replace(res, cached=True, usage=dict(res.usage))
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            res = await self._claimed_send(key, endpoint, kw, model, prompt_id, est_tokens,
                                           parse, max_parse_retries, debug_prompt)
            fut.set_result(res)
            return res
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody shares it
            raise
        finally:
            del self._inflight[key]

    async def _claimed_send(self, key: str, endpoint: str, kw: dict, model: str,
                            prompt_id: str, est_tokens: int, parse: Callable[[Any], Any],
                            max_parse_retries: int | None, debug_prompt: Any) -> CallResult:
        """Send under the key's claim; while another process holds it, wait for its answer
        (polling the cache, 0.05 s doubling to 1 s) instead of sending the same request."""
        delay = 0.05
        while not self.cache.claim(key):
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
            if not self.cache.claimed(key):  # answered, failed or abandoned: look again
                hit = self._from_cache(key, endpoint, model, parse)
                if hit is not None and hit.ok:
                    return hit
        try:
            hit = self._from_cache(key, endpoint, model, parse)  # answered while we waited
            if hit is not None and hit.ok:
                return hit
            return await self._send(endpoint, kw, model, prompt_id, est_tokens, parse,
                                    max_parse_retries, debug_prompt, key)
        finally:
            self.cache.release(key)

    async def _send(self, endpoint: str, kw: dict, model: str, prompt_id: str, est_tokens: int,
                    parse: Callable[[Any], Any], max_parse_retries: int | None,
                    debug_prompt: Any, key: str | None) -> CallResult:
        """Send one request with the retry policy; store the ok answer under ``key``."""
        p = self.provider
        if self.fatal:
            raise self.fatal
        client = await self._open()
        create = client.chat.completions.create if endpoint == "chat" else client.completions.create
        total = {"prompt_tokens": 0, "completion_tokens": 0}
        t_start = time.monotonic()
        state = RetryState(p)
        parse_failures, attempt, waited, raw = 0, 0, 0.0, None
        while True:
            if self.fatal:
                raise self.fatal
            kind, retry_after, http, error, value, resp = None, None, None, None, None, None
            pt = ct = 0
            async with self._sem:  # the slot is reserved by a request that is ready to go
                await self.limits.acquire(est_tokens)
                t0 = time.monotonic()
                try:
                    resp = await create(**kw)
                    pt, ct = _usage(resp)
                    value = parse(resp)
                except MalformedResponse as exc:
                    parse_failures += 1
                    raw = exc.raw if exc.raw is not None else raw
                    kind, error = TRANSIENT, f"malformed response: {exc}"
                    if max_parse_retries is not None and parse_failures > max_parse_retries:
                        kind = REFUSED  # asked often enough: the row is an error
                except openai.APIStatusError as exc:
                    http, code = exc.status_code, _error_code(exc)
                    kind, error = classify_status(http, code), f"HTTP {http}: {_provider_message(exc)}"
                    if kind == FATAL and fatal_hint(http, code):  # e.g. a used-up quota
                        error += f" ({code}: {fatal_hint(http, code)})"
                    retry_after = _retry_after(exc)
                except openai.APITimeoutError:
                    kind, error = TIMEOUT, f"timeout after {p.timeout_s} s"
                except openai.APIConnectionError as exc:
                    cause = exc.__cause__ or exc
                    kind, error = TRANSIENT, f"connection error: {type(cause).__name__}: {cause}"
                except (openai.APIResponseValidationError, ValueError) as exc:
                    kind, error = TRANSIENT, f"malformed response: {type(exc).__name__}: {exc}"
            latency = time.monotonic() - t0
            total["prompt_tokens"] += pt
            total["completion_tokens"] += ct
            await self.limits.charge(pt + ct - est_tokens)
            wait = None
            if kind is None:
                status = "ok"
            elif kind == FATAL:
                status = "fatal"
            elif kind == REFUSED:
                status = "error"
            else:
                wait = state.next_wait(kind, retry_after, attempt)
                status = "retry" if wait is not None else (
                    "fatal" if state.rate_limit_exhausted else "error")
                if wait is None:
                    error = f"{error} ({state.gave_up})"
            error = self.call_log.scrub(error, key_like=True) if error else None
            self._log(model, prompt_id, latency, total, pt, ct, status, attempt, kind, wait,
                      error, http, debug_prompt, value)
            if status == "fatal":
                self.accounting.add(self.stage, model, p, False, total["prompt_tokens"],
                                    total["completion_tokens"], attempt, timeouts=state.timeouts,
                                    wait_s=waited)
                self.fatal = RateLimitedError(p.name, state.rate_limited_s, p.rate_limit_budget_s,
                                              error) if kind == RATE_LIMITED else \
                    FatalAPIError(p.name, http or 0, error.split(": ", 1)[-1])
                raise self.fatal
            if status == "ok":
                self.n_ok += 1
                self.n_refused_in_a_row = 0
                if key is not None:
                    self.cache.put_ok(key, resp.to_dict(),  # ~0.1 ms: no fsync (request_cache)
                                      {"endpoint": endpoint, "model": model,
                                       "stage": self.stage, "prompt_id": prompt_id})
            elif status == "error" and kind == REFUSED and http is not None:
                self.n_refused_in_a_row += 1
                if self.n_ok == 0 and self.n_refused_in_a_row >= REFUSALS_BEFORE_STOP:
                    self.fatal = FatalAPIError(
                        p.name, http, f"the first {self.n_refused_in_a_row} calls were all "
                        f"refused; last: {error.split(': ', 1)[-1]} (a config problem, e.g. an "
                        "unsupported parameter or model)")
            if status in ("ok", "error"):
                if status == "error" and key is not None:
                    self.cache.put_error(key, error, {"endpoint": endpoint, "model": model,
                                                      "stage": self.stage, "prompt_id": prompt_id})
                self.accounting.add(self.stage, model, p, status == "ok", total["prompt_tokens"],
                                    total["completion_tokens"], attempt, timeouts=state.timeouts,
                                    wait_s=waited)
                return CallResult(ok=status == "ok", value=value, error=error, retries=attempt,
                                  latency_s=time.monotonic() - t_start, usage=total,
                                  raw=None if status == "ok" else raw)
            waited += wait
            await asyncio.sleep(wait)
            attempt += 1

    def _log(self, model, prompt_id, latency, total, pt, ct, status, attempt, kind, wait, error,
             http, debug_prompt, value) -> None:
        p = self.provider
        debug = {"debug_prompt": debug_prompt,
                 "debug_answer": None if value is None else str(value)} if self.call_log.debug else {}
        cost = (pt * p.cost_per_million_input_tokens + ct * p.cost_per_million_output_tokens) / 1e6
        self.call_log.write(stage=self.stage, provider=p.name, model=model, prompt_id=prompt_id,
                            latency_s=round(latency, 4), prompt_tokens=total["prompt_tokens"],
                            completion_tokens=total["completion_tokens"], status=status,
                            retries=attempt, reason=kind, wait_s=None if wait is None else round(wait, 3),
                            attempt_prompt_tokens=pt, attempt_completion_tokens=ct,
                            attempt_cost_usd=round(cost, 8), error=error, http_status=http, **debug)


def run_with_client(provider: ProviderConfig, stage: str, api_log: str | Path | None,
                    body: Callable[[LLMClient], Any], debug: bool = False,
                    request_cache: str | Path | None = None, retry_errors: bool = True,
                    rate_limit_dir: str | Path | None = None) -> Any:
    """Run ``await body(client)`` for one stage and return its result.

    Creates the ``LLMClient`` with a ``CallLog(api_log)``, the request cache in
    ``request_cache`` (None: no cache) and the provider's rate limits (shared through
    ``rate_limit_dir`` when given); the endpoint (a local server for ``kind: local``)
    is opened at the first uncached call and closed at the end. On every exit path
    the token/cost summary (with cached calls) is printed to stderr and appended to
    the call log as ``{"event": "stage_summary", "stage", "totals": [...]}``.

    Parameters
    ----------
    provider : ProviderConfig
        The provider.
    stage : str
        The stage's name in logs.
    api_log : str, Path or None
        The call log.
    body : callable
        ``async body(client) -> result``.
    debug : bool, default=False
        Log prompts and answers.
    request_cache : str, Path or None, default=None
        The request cache folder.
    retry_errors : bool, default=True
        False: reuse cached final errors instead of asking again (``--no-retry-errors``).
    rate_limit_dir : str, Path or None, default=None
        The folder of the shared rate-limit state.

    Returns
    -------
    object
        What ``body`` returned.

    Raises
    ------
    CJEError
        SIGTERM cancelled the stage cleanly; also :class:`FatalAPIError` and
        :class:`~cje.llm.client.retry.RateLimitedError` from the calls.
    """
    call_log = CallLog(api_log, debug=debug)
    acct = Accounting()
    cache = RequestCache(request_cache, use_errors=not retry_errors) if request_cache else None
    limits = RateLimits.for_provider(provider, rate_limit_dir)
    terminated = []

    with contextlib.ExitStack() as endpoint:
        async def main() -> Any:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()

            def on_sigterm() -> None:  # Snakemake/SLURM cancel: stop; answers are cached
                terminated.append(True)
                task.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGTERM, on_sigterm)
            async with LLMClient(provider, None, stage, call_log, acct, cache=cache, limits=limits,
                                 opener=lambda: endpoint.enter_context(provider_endpoint(provider))
                                 ) as client:
                return await body(client)

        try:
            return asyncio.run(main())
        except asyncio.CancelledError:
            if terminated:
                raise CJEError(f"{stage}: terminated by SIGTERM; finished answers are kept in "
                               "the request cache, rerun to resume") from None
            raise
        finally:
            call_log.write(event="stage_summary", stage=stage, totals=acct.summary())
            print(f"[{stage}] {acct.format_summary()}", file=sys.stderr)
