"""OpenAI-compatible request/response mapping for the embedded model server.

``completions(engine, body)`` and ``chat_completions(engine, body)`` turn a
decoded JSON request into a JSON-ready response dict, or raise
:class:`ApiError` (HTTP 400 with an OpenAI-style error body).

Differences from llama.cpp's own server (on purpose, see docs/local_model.md):

* sampling defaults are neutral: ``top_p`` 1, ``top_k`` 0 (off), ``min_p`` 0,
  no repetition penalties (a request may still set top_k / top_p / min_p;
  penalties and ``logit_bias`` are refused with 400 because they change the
  sampling density away from what teacher forcing scores);
* every log-prob (echoed prompt tokens, generated tokens, ``top_logprobs``) is
  ``log_softmax(logits / temperature)`` of the request's temperature; the
  response says which in ``cje.logprob_temperature`` (T <= 0, greedy, reports 1);
* echoed ``text_offset`` values are character offsets into the string that was
  sent (special tokens render as their text), BOS is not echoed and the first
  echoed token's log-prob is conditional on BOS (a number, not null);
* ``max_tokens`` may be 0 with ``echo`` (score only);
* every completion choice carries ``token_ids``: the generated (sampled) token
  path; store it to teacher-force exactly that path later;
* ``cje_prompt_chars: n`` (our extension, send it only to this server): the
  first n characters of ``prompt`` are the chat prompt, tokenized alone as when
  sampling; tokens after it are evaluated one per decode, exactly as sampling
  evaluates a response (llama.cpp's batched kernels give a row logits up to
  ~0.5 nats away from the one-token decode used while sampling). With
  ``cje_response_token_ids: [...]`` the response is scored along that token
  path when the ids spell the text after the prompt (``cje.token_path``:
  ``sampled``), else along its canonical tokenization (``canonical``);
* unsupported features (``n`` > 1, ``stream``, ``response_format``, tools,
  token-id prompts) are refused with 400 rather than ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from cje.llm.local.engine import Generation, LocalEngine, TokenLogprobs
from cje.llm.local.model import MODEL_ID
from cje.llm.templates import end_of_turn, render_messages

MAX_TOP_LOGPROBS = 20
DEFAULT_CHAT_MAX_TOKENS = 512


class ApiError(Exception):
    """A request the server refuses: HTTP ``status`` with an OpenAI-style error body.

    Parameters
    ----------
    message : str
        What is wrong.
    param : str or None, default=None
        The request field concerned.
    status : int, default=400
        The HTTP status.
    """

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


def _number(body: dict, name: str, default: float, lo: float | None = None) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(f"'{name}' must be a number, got {value!r}", name)
    if lo is not None and value < lo:
        raise ApiError(f"'{name}' must be >= {lo}, got {value!r}", name)
    return float(value)


def _int(body: dict, name: str, default: int | None, lo: int = 0, hi: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f" and <= {hi}" if hi is not None else ""
        raise ApiError(f"'{name}' must be an integer >= {lo}{bound}, got {value!r}", name)
    return value


def _refuse_unsupported(body: dict) -> None:
    if body.get("stream"):
        raise ApiError("stream=true is not supported by the embedded server", "stream")
    if _int(body, "n", 1, lo=1) != 1 or _int(body, "best_of", 1, lo=1) != 1:
        raise ApiError("only n=1 (and best_of=1) is supported by the embedded server", "n")
    if body.get("logit_bias"):
        raise ApiError("logit_bias changes the sampling density; not supported", "logit_bias")
    for name, neutral in (("repeat_penalty", 1.0), ("presence_penalty", 0.0), ("frequency_penalty", 0.0)):
        if _number(body, name, neutral) != neutral:
            raise ApiError(
                f"'{name}' must be {neutral}: penalties make teacher-forced log-probs invalid", name
            )
    for name in ("tools", "functions", "suffix"):
        if body.get(name):
            raise ApiError(f"'{name}' is not supported by the embedded server", name)
    fmt = body.get("response_format")
    if fmt and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise ApiError("response_format (structured output) is not supported by the embedded server", "response_format")


def _stops(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise ApiError(f"'stop' must be a string or a list of strings, got {stop!r}", "stop")


def _sampling(body: dict) -> dict[str, Any]:
    top_k = body.get("top_k")
    top_k = 0 if top_k is None or (isinstance(top_k, int) and top_k < 0) else _int(body, "top_k", 0)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(f"'seed' must be an integer, got {seed!r}", "seed")
    return {
        "temperature": _number(body, "temperature", 1.0, lo=0.0),
        "top_p": _number(body, "top_p", 1.0, lo=0.0),
        "top_k": top_k,
        "min_p": _number(body, "min_p", 0.0, lo=0.0),
        "seed": seed,
    }


def _char_offsets(pieces: list[bytes], start_byte: int, text_bytes: bytes) -> list[int]:
    """Character offset (into ``text_bytes`` decoded) of each piece starting at ``start_byte``."""
    offsets, pos = [], start_byte
    for p in pieces:
        offsets.append(len(text_bytes[:pos].decode("utf-8", errors="ignore")))
        pos += len(p)
    return offsets


def _token_str(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


def _top_dict(engine: LocalEngine, top: list[tuple[int, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for tok, lp in top:  # sorted by log-prob, so a repeated string keeps its best entry
        out.setdefault(_token_str(engine.piece(tok)), lp)
    return out


def _completion_logprobs(engine: LocalEngine, gen: Generation, prompt: str, text: str, echo: bool) -> dict:
    parts: list[TokenLogprobs] = ([gen.prompt] if echo else []) + [gen.generated]
    ids = [t for p in parts for t in p.token_ids]
    pieces = [engine.piece(t) for t in ids]
    prompt_bytes = prompt.encode("utf-8")
    full = prompt_bytes + text.encode("utf-8")
    offsets = _char_offsets(pieces, 0 if echo else len(prompt_bytes), full)
    return {
        "tokens": [_token_str(p) for p in pieces],
        "token_logprobs": [lp for p in parts for lp in p.logprobs],
        "top_logprobs": [_top_dict(engine, top) for p in parts for top in p.top],
        "text_offset": offsets,
        "token_ids": ids,
    }


def _envelope(kind: str, choice: dict, gen: Generation, sampling: dict, offsets_exact: bool | None) -> dict:
    n_prompt = len(gen.prompt.token_ids)
    n_out = len(gen.generated.token_ids)
    cje = {
        "logprob_temperature": gen.logprob_temperature,
        "sampler": {k: sampling[k] for k in ("temperature", "top_k", "top_p", "min_p")},
    }
    if offsets_exact is not None:
        cje["offsets_exact"] = offsets_exact
    return {
        "id": f"{'cmpl' if kind == 'text_completion' else 'chatcmpl'}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": MODEL_ID,
        "system_fingerprint": "cje-local",
        "choices": [choice],
        "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out},
        "cje": cje,
    }


def completions(engine: LocalEngine, body: dict) -> dict:
    """Handle ``POST /v1/completions``; see the module docstring for semantics.

    Parameters
    ----------
    engine : LocalEngine
        The loaded model.
    body : dict
        The request's JSON body.

    Returns
    -------
    dict
        The OpenAI-style ``text_completion`` payload, with a ``cje`` block (and
        ``token_path`` when ``cje_prompt_chars`` was sent).

    Raises
    ------
    ApiError
        An unsupported or malformed request, or one that does not fit the context window.
    """
    _refuse_unsupported(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError("'prompt' must be one string (token-id and batched prompts are not supported)", "prompt")
    sampling = _sampling(body)
    echo = bool(body.get("echo", False))
    logprobs = _int(body, "logprobs", None, lo=0, hi=MAX_TOP_LOGPROBS)
    max_tokens = _int(body, "max_tokens", 16, lo=0)
    prompt_chars = _int(body, "cje_prompt_chars", None, lo=0)
    response_ids = body.get("cje_response_token_ids")
    if response_ids is not None and (
        prompt_chars is None or not isinstance(response_ids, list)
        or not all(isinstance(t, int) and not isinstance(t, bool) for t in response_ids)
    ):
        raise ApiError("'cje_response_token_ids' must be a list of token ids and needs 'cje_prompt_chars'",
                       "cje_response_token_ids")
    try:
        gen, text = engine.complete(
            prompt, max_tokens, top_n=logprobs or 0, echo=echo and logprobs is not None,
            stop=_stops(body), prompt_chars=prompt_chars, response_token_ids=response_ids, **sampling,
        )
    except ValueError as exc:
        raise ApiError(str(exc), "prompt") from exc
    prompt_pieces = b"".join(engine.piece(t) for t in gen.prompt.token_ids)
    choice = {
        "index": 0,
        "token_ids": list(gen.generated.token_ids),  # the sampled path, for exact teacher forcing
        "text": (prompt + text) if echo else text,
        "logprobs": None if logprobs is None else _completion_logprobs(engine, gen, prompt, text, echo),
        "finish_reason": gen.finish_reason,
    }
    exact = prompt_pieces == prompt.encode("utf-8") if echo and logprobs is not None else None
    if not gen.prompt.token_ids:  # echo without logprobs: prompt was not scored, count it anyway
        gen.prompt.token_ids = engine.tokenize(prompt)[1:]
    payload = _envelope("text_completion", choice, gen, sampling, exact)
    if prompt_chars is not None:
        payload["cje"]["token_path"] = gen.token_path
    return payload


def chat_completions(engine: LocalEngine, body: dict, template: str = "gemma") -> dict:
    """Handle ``POST /v1/chat/completions`` by rendering ``messages`` with ``template``.

    Generation stops at the model's end-of-turn token (``end_of_turn(template)``
    is also added to the stop strings). ``logprobs: true`` with ``top_logprobs: k``
    returns the chat-format per-token log-probs at the request's temperature.

    Parameters
    ----------
    engine : LocalEngine
        The loaded model.
    body : dict
        The request's JSON body.
    template : str, default='gemma'
        The chat template.

    Returns
    -------
    dict
        The OpenAI-style ``chat.completion`` payload.

    Raises
    ------
    ApiError
        An unsupported or malformed request, messages that cannot be rendered, or one that
        does not fit the context window.
    """
    _refuse_unsupported(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError("'messages' must be a non-empty list", "messages")
    try:
        prompt = render_messages(template, messages)
    except ValueError as exc:
        raise ApiError(str(exc), "messages") from exc
    sampling = _sampling(body)
    want_lp = bool(body.get("logprobs"))
    top_n = _int(body, "top_logprobs", 0, lo=0, hi=MAX_TOP_LOGPROBS) if want_lp else 0
    max_tokens = _int(body, "max_completion_tokens", None, lo=0)
    max_tokens = _int(body, "max_tokens", DEFAULT_CHAT_MAX_TOKENS, lo=0) if max_tokens is None else max_tokens
    try:
        gen, text = engine.complete(
            prompt, max_tokens, top_n=top_n, stop=_stops(body) + [end_of_turn(template)], **sampling
        )
    except ValueError as exc:
        raise ApiError(str(exc), "messages") from exc
    content = None
    if want_lp:
        content = []
        for tok, lp, top in zip(gen.generated.token_ids, gen.generated.logprobs, gen.generated.top):
            piece = engine.piece(tok)
            alts = [
                {"token": _token_str(engine.piece(t)), "logprob": v, "bytes": list(engine.piece(t))} for t, v in top
            ]
            content.append({"token": _token_str(piece), "logprob": lp, "bytes": list(piece), "top_logprobs": alts})
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "logprobs": None if content is None else {"content": content},
        "finish_reason": gen.finish_reason,
    }
    gen.prompt.token_ids = engine.tokenize(prompt)[1:]
    return _envelope("chat.completion", choice, gen, sampling, None)
