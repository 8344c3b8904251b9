"""Teacher-forced log P(response | prompt, policy) at the policy's temperature.

The policy's full chat ``render_full(template, system, user, response)`` (system
+ user + response + end-of-turn) is sent to ``/v1/completions`` with
``echo=True, logprobs=1`` and ``max_tokens`` 0 (our embedded server) or 1 (any
other server; the trap: the last echoed token is then the generated one). The
response span is located in the echo:

``offsets`` (one call)
    The echoed tokens must spell the sent string at their ``text_offset`` values
    (llama.cpp's own server fails this: special tokens echo as ""), there must be
    a token boundary exactly where the prompt-only string ``render_prompt(...)``
    ends (the prompt is a token prefix of the full string) and one where the full
    string ends; the response log-prob is the sum of the token log-probs in
    between. Otherwise:
``two_call``
    log P(full) - log P(prompt-only), each the sum of its echoed prompt-token
    log-probs (generated tokens dropped using ``usage.completion_tokens``).

Temperature: the log-prob must be the log-density of the sampling distribution,
``log_softmax(logits / T)``. Our server says which T it scored at
(``cje.logprob_temperature``); a server that does not say is assumed to score at
T = 1 (true of llama.cpp's server and hosted APIs), so a policy with T != 1 on
such a server is *refused* (status ``error``), never silently mixed. Policies
whose sampling truncates or penalises (top_p < 1, top_k > 0, min_p > 0,
penalties) are refused likewise, as are temperature 0 (greedy: no density) and
chat_template ``none`` (the string cannot be rendered).

Row checks: a log-prob > 0, NaN/inf, an empty span or a span that cannot be
found is an ``error`` status with the reason, never a number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from cje.llm.client.http import LLMClient, MalformedResponse
from cje.llm.templates import render_full, render_prompt

OFFSETS, TWO_CALL = "offsets", "two_call"
_EPS = 1e-9  # tolerance for "log-prob > 0" (float rounding)


@dataclass
class Score:
    """The result for one (policy, response): the fields of a ``data/logprobs`` row.

    Parameters
    ----------
    logprob : float or None
        log P(response | prompt, policy); None unless ``status`` is ok.
    n_tokens : int or None
        Tokens in the response span.
    method : {'offsets', 'two_call'} or None
        How the span was scored.
    status : {'ok', 'error'}
        The row's status.
    error : str or None, default=None
        Why it is an error.
    logprob_temperature : float or None, default=None
        The temperature the log-probs were scored at.
    fallback_reason : str or None, default=None
        Why ``offsets`` was not usable (method two_call).
    token_path : str or None, default=None
        Embedded server: "sampled" (the stored token ids) or "canonical".
    """

    logprob: float | None
    n_tokens: int | None
    method: str | None
    status: str  # "ok" or "error"
    error: str | None = None
    logprob_temperature: float | None = None
    fallback_reason: str | None = None  # why ``offsets`` was not usable (method two_call)
    token_path: str | None = None  # embedded server: "sampled" (the stored token ids) or "canonical"

    def as_row(self) -> dict:
        """The row fields as a dict.

        ``logprob, n_tokens, method, status, error, logprob_temperature, fallback_reason, token_path``.

        Returns
        -------
        dict
            The fields of one output row.
        """
        return asdict(self)


class SpanError(ValueError):
    """The response span cannot be located in an echo (triggers the two-call fallback)."""


@dataclass
class Echo:
    """What we need from an echoed completion: parallel token lists plus metadata.

    Parameters
    ----------
    tokens : list of str
        The echoed tokens.
    token_logprobs : list of (float or None)
        Their log-probs.
    text_offset : list of int
        Their character offsets.
    completion_tokens : int or None
        Generated tokens (``usage.completion_tokens``).
    logprob_temperature : float or None
        What the server says it scored at (None: not said).
    token_path : str or None, default=None
        Embedded server: which token path was scored.
    """

    tokens: list[str]
    token_logprobs: list[float | None]
    text_offset: list[int]
    completion_tokens: int | None
    logprob_temperature: float | None  # what the server says it scored at (None: not said)
    token_path: str | None = None  # embedded server: which token path was scored


def echo_from_response(resp: Any) -> Echo:
    """Extract an :class:`Echo` from an ``openai`` Completion.

    Parameters
    ----------
    resp : Completion
        An echoed completion.

    Returns
    -------
    Echo
        The echoed tokens, log-probs, offsets and metadata.

    Raises
    ------
    MalformedResponse
        The echo is absent or its lists differ in length (the client retries the call).
    """
    choices = getattr(resp, "choices", None)
    lp = choices[0].logprobs if choices else None
    if lp is None or lp.tokens is None or lp.token_logprobs is None:
        raise MalformedResponse("completion has no echoed logprobs (choices[0].logprobs)")
    if len(lp.token_logprobs) != len(lp.tokens):
        raise MalformedResponse("echoed tokens and token_logprobs differ in length")
    extra = getattr(resp, "model_extra", None) or {}
    cje = extra.get("cje") if isinstance(extra, dict) else None
    usage = getattr(resp, "usage", None)
    return Echo(
        tokens=list(lp.tokens),
        token_logprobs=list(lp.token_logprobs),
        text_offset=list(lp.text_offset or []),
        completion_tokens=None if usage is None else getattr(usage, "completion_tokens", None),
        logprob_temperature=(cje or {}).get("logprob_temperature") if isinstance(cje, dict) else None,
        token_path=(cje or {}).get("token_path") if isinstance(cje, dict) else None,
    )


def refusal_reason(policy) -> str | None:
    """Why a policy's log-probs cannot be valid densities (None if they can).

    Parameters
    ----------
    policy : PolicyConfig
        A ``PolicyConfig``-like object (``chat_template``, ``temperature``,
        ``top_p``, ``extra_body``).

    Returns
    -------
    str or None
        The reason, or None.
    """
    if policy.chat_template == "none":
        return (f"policy '{policy.name}': chat_template 'none' cannot be teacher-forced "
                "(the provider's template is unknown); set gemma, llama3 or chatml")
    if not policy.temperature or policy.temperature <= 0:
        return f"policy '{policy.name}': temperature {policy.temperature} is greedy decoding (no density)"
    if policy.top_p is not None and policy.top_p < 1.0:
        return f"policy '{policy.name}': top_p={policy.top_p} < 1 truncates sampling; log-probs invalid"
    extra = policy.extra_body or {}
    for name, neutral in (("top_k", 0), ("min_p", 0.0), ("repeat_penalty", 1.0),
                          ("repetition_penalty", 1.0), ("presence_penalty", 0.0), ("frequency_penalty", 0.0)):
        value = extra.get(name)
        if value is not None and value != neutral and not (name == "top_k" and value < 0):
            return f"policy '{policy.name}': {name}={value} changes the sampling density; log-probs invalid"
    return None


def temperature_error(echo: Echo, temperature: float) -> str | None:
    """Error text if the echo was not scored at ``temperature`` (see module docstring).

    Parameters
    ----------
    echo : Echo
        The echo (a server that does not say is assumed to score at T = 1).
    temperature : float
        The policy's sampling temperature.

    Returns
    -------
    str or None
        The error text, or None when the temperatures agree.
    """
    scored_at = 1.0 if echo.logprob_temperature is None else float(echo.logprob_temperature)
    if abs(scored_at - float(temperature)) <= 1e-9:
        return None
    said = "reports" if echo.logprob_temperature is not None else "does not report a scoring temperature, so assumed"
    return (f"server {said} log-probs at T={scored_at:g} but the policy samples at T={temperature:g}; "
            "refusing to mix temperatures (use the embedded local server or a backend that scores at T)")


def _cap_generated(echo: Echo, max_tokens: int) -> None:
    """Generated tokens in an echo: ``usage.completion_tokens`` capped at the requested
    ``max_tokens`` (some servers count the echo as completion), or ``max_tokens``
    when the server reports no usage."""
    ct = echo.completion_tokens
    echo.completion_tokens = max_tokens if ct is None else min(int(ct), max_tokens)


def _prompt_token_count(echo: Echo) -> int:
    """Number of echoed tokens that belong to the sent text (generated ones dropped)."""
    n_gen = echo.completion_tokens or 0
    return len(echo.tokens) - n_gen


def locate_span(echo: Echo, prompt_text: str, full_text: str) -> tuple[int, int]:
    """Return token indices ``[start, end)`` of the response span in an echo of ``full_text``.

    Parameters
    ----------
    echo : Echo
        The echo of ``full_text``.
    prompt_text : str
        The rendered prompt-only string.
    full_text : str
        The rendered full chat.

    Returns
    -------
    start, end : int
        Token indices of the span.

    Raises
    ------
    SpanError
        The echoed sent-text tokens do not spell ``full_text`` exactly at their offsets; no
        token starts at ``len(prompt_text)`` (the prompt is not a token prefix); or the span
        does not end exactly at ``len(full_text)``.
    """
    if not full_text.startswith(prompt_text):
        raise SpanError("rendered prompt is not a prefix of the rendered full chat")
    n = _prompt_token_count(echo)
    if len(echo.text_offset) < n or n <= 0:
        raise SpanError("echo has no text offsets")
    pos = echo.text_offset[0] if n else 0
    if pos != 0:
        raise SpanError(f"first echoed token starts at offset {pos}, not 0")
    for i in range(n):
        tok, off = echo.tokens[i], echo.text_offset[i]
        if off != pos or full_text[off : off + len(tok)] != tok:
            raise SpanError(f"echoed token {i} {tok!r} does not match the sent text at offset {off}")
        pos += len(tok)
    if pos != len(full_text):
        raise SpanError(f"echoed tokens cover {pos} of {len(full_text)} characters")
    starts = echo.text_offset[:n]
    try:
        start = starts.index(len(prompt_text))
    except ValueError:
        raise SpanError("no token boundary where the prompt ends (prompt is not a token prefix)") from None
    return start, n


def sum_checked(values: list[float | None], what: str) -> float:
    """Sum log-probs; ``ValueError`` for None, NaN, inf or a value > 0.

    Parameters
    ----------
    values : list of (float or None)
        Token log-probs.
    what : str
        What they are, for the error message.

    Returns
    -------
    float
        The sum.

    Raises
    ------
    ValueError
        A value is None, NaN, inf or > 0.
    """
    total = 0.0
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            raise ValueError(f"{what}: token {i} log-prob is {v!r}")
        if v > _EPS:
            raise ValueError(f"{what}: token {i} log-prob {v} > 0")
        total += v
    return total


def score_from_echo(echo: Echo, prompt_text: str, full_text: str, temperature: float) -> Score:
    """Score one response from a single echo (``offsets``).

    Parameters
    ----------
    echo : Echo
        The echo of the full chat.
    prompt_text, full_text : str
        The rendered prompt-only and full strings.
    temperature : float
        The policy's sampling temperature.

    Returns
    -------
    Score
        An ``error`` Score for a wrong temperature, an empty span or a bad log-prob.

    Raises
    ------
    SpanError
        The span cannot be located (the caller falls back to ``two_call``).
    """
    err = temperature_error(echo, temperature)
    if err:
        return Score(None, None, OFFSETS, "error", err, echo.logprob_temperature)
    start, end = locate_span(echo, prompt_text, full_text)
    if end <= start:
        return Score(None, 0, OFFSETS, "error", "response span is empty", echo.logprob_temperature)
    try:
        total = sum_checked(echo.token_logprobs[start:end], "response span")
    except ValueError as exc:
        return Score(None, end - start, OFFSETS, "error", str(exc), temperature)
    return Score(total, end - start, OFFSETS, "ok", None, temperature, token_path=echo.token_path)


def score_two_call(full: Echo, prompt: Echo, temperature: float) -> Score:
    """Score one response as log P(full) - log P(prompt-only) (``two_call``).

    Each total is the sum of its sent-text token log-probs; the first token's
    log-prob (null on OpenAI-style servers, conditional on BOS on ours) appears
    in both and cancels, so a null first value counts as 0.

    Parameters
    ----------
    full : Echo
        The echo of the full chat.
    prompt : Echo
        The echo of the prompt-only string.
    temperature : float
        The policy's sampling temperature.

    Returns
    -------
    Score
        The response's log-prob (method ``two_call``), or an ``error`` Score when the difference
        is not a log-probability.
    """
    for echo in (full, prompt):
        err = temperature_error(echo, temperature)
        if err:
            return Score(None, None, TWO_CALL, "error", err, echo.logprob_temperature)
    n_full, n_prompt = _prompt_token_count(full), _prompt_token_count(prompt)
    if n_full <= n_prompt:
        return Score(None, 0, TWO_CALL, "error",
                     f"full chat has {n_full} tokens, prompt alone {n_prompt}: response not found", temperature)

    def total(echo: Echo, n: int, what: str) -> float:
        values = list(echo.token_logprobs[:n])
        if values and values[0] is None:
            values[0] = 0.0
        return sum_checked(values, what)

    try:
        value = total(full, n_full, "full chat") - total(prompt, n_prompt, "prompt")
    except ValueError as exc:
        return Score(None, n_full - n_prompt, TWO_CALL, "error", str(exc), temperature)
    if not math.isfinite(value) or value > _EPS:
        return Score(None, n_full - n_prompt, TWO_CALL, "error",
                     f"two-call difference {value} is not a log-probability", temperature)
    return Score(value, n_full - n_prompt, TWO_CALL, "ok", None, temperature, token_path=full.token_path)


def render_pair(policy, user_prompt: str, response: str, include_end_of_turn: bool = True) -> tuple[str, str]:
    """Return (prompt-only text, full text) of ``policy`` for one row.

    ``include_end_of_turn=False`` (a response cut by max_tokens) scores the
    response without the end-of-turn marker, which was never sampled.

    Parameters
    ----------
    policy : PolicyConfig
        The policy (chat template and system prompt).
    user_prompt : str
        The user prompt.
    response : str
        The response.
    include_end_of_turn : bool, default=True
        Append the end-of-turn marker.

    Returns
    -------
    prompt_text, full_text : str
        The rendered prompt-only and full strings.
    """
    prompt_text = render_prompt(policy.chat_template, policy.system_prompt, user_prompt)
    if include_end_of_turn:
        full_text = render_full(policy.chat_template, policy.system_prompt, user_prompt, response)
    else:
        full_text = prompt_text + response
    return prompt_text, full_text


async def score_response(
    client: LLMClient,
    policy,
    user_prompt: str,
    response: str,
    prompt_id: str,
    embedded_server: bool,
    include_end_of_turn: bool = True,
    response_token_ids: list[int] | None = None,
) -> Score:
    """Teacher-force one response under ``policy`` through ``client`` (the stage's client).

    On the embedded server (``embedded_server``) the request carries
    ``cje_prompt_chars`` so the response tokens are evaluated one per decode, as
    they were when sampled (see :mod:`cje.llm.local.api`): the teacher-forced
    log-prob then equals the sampling log-prob exactly. With
    ``response_token_ids`` (the ``token_ids`` the embedded server returned when
    sampling) the sampled token path itself is scored, not the canonical
    tokenization of the text (``token_path`` in the result says which).

    Parameters
    ----------
    client : LLMClient
        The policy's client.
    policy : PolicyConfig
        The policy.
    user_prompt : str
        The user prompt.
    response : str
        The response text.
    prompt_id : str
        For the call log.
    embedded_server : bool
        True for the embedded server, which accepts ``max_tokens=0``; other servers get 1
        and the generated token is dropped.
    include_end_of_turn : bool, default=True
        Score the end-of-turn marker (False for a response cut by max_tokens).
    response_token_ids : list of int or None, default=None
        The sampled token ids (embedded server only).

    Returns
    -------
    Score
        ``offsets`` when the echo allows it, else ``two_call`` with ``fallback_reason``.
        Failed calls give an ``error`` Score with the client's error text.

    Raises
    ------
    FatalAPIError
        Propagates from the client.
    """
    reason = refusal_reason(policy)
    if reason:
        return Score(None, None, None, "error", reason)
    prompt_text, full_text = render_pair(policy, user_prompt, response, include_end_of_turn)
    kw = dict(model=policy.model, prompt_id=prompt_id, max_tokens=0 if embedded_server else 1,
              temperature=policy.temperature, echo=True, logprobs=1, parse=echo_from_response)
    hint = {"extra_body": {"cje_prompt_chars": len(prompt_text)}} if embedded_server else {}
    first_hint = hint
    if embedded_server and response_token_ids:
        first_hint = {"extra_body": {**hint["extra_body"], "cje_response_token_ids": list(response_token_ids)}}
    first = await client.complete(full_text, **kw, **first_hint)
    if not first.ok:
        return Score(None, None, OFFSETS, "error", first.error)
    _cap_generated(first.value, kw["max_tokens"])
    try:
        return score_from_echo(first.value, prompt_text, full_text, policy.temperature)
    except SpanError as exc:
        fallback = str(exc)
    second = await client.complete(prompt_text, **kw, **hint)
    if not second.ok:
        return Score(None, None, TWO_CALL, "error", second.error, fallback_reason=fallback)
    _cap_generated(second.value, kw["max_tokens"])
    score = score_two_call(first.value, second.value, policy.temperature)
    score.fallback_reason = fallback
    return score
