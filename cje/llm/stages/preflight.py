"""The provider preflight: one tiny request per capability a stage needs, before its rows.

Every LLM stage (``generate``, ``logprobs``, ``judge``, ``oracle``; fresh draws are
``generate`` runs) first checks that its endpoint can do what the stage will ask of
it, and ``cje check-provider`` runs the same checks for every stage of a config.
Each stage module says what it needs (``preflight_requirements`` in
:mod:`~cje.llm.stages.generate`, :mod:`~cje.llm.stages.judge`,
:mod:`~cje.llm.stages.logprobs`): a :class:`Requirement` holds the capability (the
names of :mod:`cje.llm.presets`), who needs it and the probe request, shaped like the
stage's own requests (same endpoint, model and sampling fields; a short prompt, one
token). :func:`run_preflight` sends each probe through the stage's client and checks
the answer:

=====================  ==============================================================
capability             the answer must hold
=====================  ==============================================================
chat                   ``choices[0].message``
completions            ``choices[0].text``
completion_logprobs    ``choices[0].logprobs.top_logprobs[0]``: finite log-probs
prompt_logprobs        log-probs of at least two of the prompt's own tokens (echo), all
                       <= 0, scored at the policy's temperature
                       (:func:`~cje.llm.stages.teacher_forcing.temperature_error`)
json_mode              message content that is a JSON object (unless cut by max_tokens)
=====================  ==============================================================

A missing capability stops the stage with :class:`PreflightError` (``cje`` exits 2),
one line naming the capability, the provider, the model, the stage that needs it, what
the provider answered and what the provider documents (:func:`cje.llm.presets.recognise`).
A probe is one request: the provider refusing it (HTTP 400/404/413/422) or an answer
without the capability is not retried.

Caching: the probes go through the request cache like every call (``--request-cache``;
:mod:`cje.llm.client.cache`), with their own ``sample`` tag. A passed check is an ok
answer there, keyed by the provider's identity (kind, base_url), the model and the
probe request, so the check costs one request per (endpoint, model, capability) once,
not per run or shard; concurrent jobs share it through the cache's claims. A failed
check is never stored as ok: the next run asks again (after the provider or the config
was fixed); with ``--no-retry-errors`` the stored failure is reused like any other.
Probes are logged and accounted under the stage name ``preflight:<stage>``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from cje.errors import CJEError
from cje.llm.client.http import FatalAPIError, LLMClient, MalformedResponse
from cje.llm.presets import CAPABILITY_TEXT, recognise
from cje.llm.scrub import redact_url
from cje.llm.stages.teacher_forcing import echo_from_response, temperature_error

PROBE_PROMPT = "cje preflight: reply with the single word OK."
PROBE_ECHO_TEXT = "cje preflight: the sky is blue and the grass is green."
PROBE_YES_NO = "cje preflight: Is the sky blue? Answer Yes or No.\nAnswer:"
PROBE_SCORE = ('cje preflight: rate the answer "Paris" to "What is the capital of France?" '
               'from 0 to 100. Reply with the JSON object {"score": N} and nothing else.')
_MISSING = "missing"
_UNCHECKED = "not checked"


class PreflightError(CJEError):
    """A provider cannot do what a configured stage needs (``cje`` exits 2).

    Parameters
    ----------
    message : str
        One line: capability, provider, model, stage, the provider's answer.
    """


@dataclass(frozen=True)
class Requirement:
    """One capability a stage needs from one provider and model, with its probe.

    Parameters
    ----------
    capability : str
        One of :data:`cje.llm.presets.CAPABILITIES`.
    provider : str
        The provider's name in ``providers``.
    model : str
        The model the stage sends.
    needed_by : str
        Who needs it, e.g. ``"logprobs (policy 'base')"``.
    endpoint : {'chat', 'completions'}
        The probe's endpoint.
    request : dict
        The probe's fields for :meth:`LLMClient.chat` / :meth:`LLMClient.complete`
        (``messages`` or ``prompt``, ``max_tokens``, ...; ``model`` excluded).
    temperature : float or None, default=None
        ``prompt_logprobs``: the temperature the log-probs must be scored at.
    """

    capability: str
    provider: str
    model: str
    needed_by: str
    endpoint: str
    request: dict = field(hash=False)
    temperature: float | None = None

    def key(self) -> str:
        """What makes two requirements one probe (the stages needing it are merged).

        Returns
        -------
        str
            Canonical JSON of provider, model, capability, endpoint, request, temperature.
        """
        return json.dumps([self.provider, self.model, self.capability, self.endpoint,
                           self.request, self.temperature], sort_keys=True, default=str)


@dataclass
class Outcome:
    """The result of one probe.

    Parameters
    ----------
    requirement : Requirement
        What was checked.
    status : {'ok', 'missing', 'not checked'}
        ``missing``: the provider refused the probe or answered without the capability;
        ``not checked``: the probe failed otherwise (timeouts, 5xx, a dropped connection).
    detail : str or None, default=None
        The provider's answer or what the answer lacked.
    cached : bool, default=False
        Passed earlier: answered from the request cache, nothing sent.
    needed_by : list of str
        Every stage needing it (requirements with one probe merged).
    fatal : FatalAPIError or None, default=None
        The provider refused every request (401/403, a used-up quota): a stage stops
        with this error itself, which is about the key or the account, not a capability.
    """

    requirement: Requirement
    status: str
    detail: str | None = None
    cached: bool = False
    needed_by: list = field(default_factory=list)
    fatal: FatalAPIError | None = None

    @property
    def ok(self) -> bool:
        """Whether the capability is there."""
        return self.status == "ok"


def _choice(resp: Any) -> Any:
    choices = getattr(resp, "choices", None)
    if not choices:
        raise MalformedResponse("the answer has no choices")
    return choices[0]


def _check_chat(resp: Any) -> Any:
    if getattr(_choice(resp), "message", None) is None:
        raise MalformedResponse("the answer has no choices[0].message")
    return resp


def _check_completions(resp: Any) -> Any:
    if not isinstance(getattr(_choice(resp), "text", None), str):
        raise MalformedResponse("the answer has no choices[0].text")
    return resp


def _check_completion_logprobs(resp: Any) -> Any:
    lp = getattr(_choice(resp), "logprobs", None)
    tops = getattr(lp, "top_logprobs", None) if lp is not None else None
    if not tops or not isinstance(tops[0], dict) or not tops[0]:
        raise MalformedResponse("the answer has no top_logprobs (choices[0].logprobs."
                                "top_logprobs[0]): log-probs were not returned")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in tops[0].values()):
        raise MalformedResponse("top_logprobs holds values that are not finite numbers")
    return resp


def _check_prompt_logprobs(max_tokens: int, temperature: float | None) -> Callable[[Any], Any]:
    def check(resp: Any) -> Any:
        try:
            echo = echo_from_response(resp)
        except MalformedResponse:
            raise MalformedResponse("the answer has no echoed log-probs (choices[0].logprobs."
                                    "tokens / token_logprobs)") from None
        ct = echo.completion_tokens
        n_prompt = len(echo.tokens) - (max_tokens if ct is None else min(int(ct), max_tokens))
        values = [v for v in echo.token_logprobs[:max(0, n_prompt)] if v is not None]
        if n_prompt < 2 or not values:
            raise MalformedResponse(f"log-probs came back for {max(0, n_prompt)} prompt "
                                    "token(s) only (the generated token's, not the prompt's): "
                                    "echo with logprobs is not supported")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v <= 1e-9
                   for v in values):
            raise MalformedResponse("echoed prompt log-probs are not finite numbers <= 0")
        if temperature is not None:
            err = temperature_error(echo, temperature)
            if err:
                raise MalformedResponse(err)
        return resp
    return check


def _check_json(resp: Any) -> Any:
    choice = _check_chat(resp).choices[0]
    text = choice.message.content
    if getattr(choice, "finish_reason", None) == "length":
        return resp  # cut by max_tokens: the request was accepted, the answer cannot tell
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        shown = text if not isinstance(text, str) else " ".join(text.split())[:60]
        raise MalformedResponse(f"response_format was accepted but ignored: the answer is "
                                f"not a JSON object ({shown!r})")
    return resp


def _parser(req: Requirement) -> Callable[[Any], Any]:
    if req.capability == "prompt_logprobs":
        return _check_prompt_logprobs(int(req.request.get("max_tokens") or 0), req.temperature)
    return {"chat": _check_chat, "completions": _check_completions,
            "completion_logprobs": _check_completion_logprobs,
            "json_mode": _check_json}[req.capability]


def _classify(error: str | None) -> str:
    """``missing`` for a refusal (4xx) or an answer without the capability, else ``not checked``."""
    text = error or ""
    if text.startswith("malformed response:"):
        return _MISSING
    if text.startswith("HTTP 4") and not text.startswith(("HTTP 408", "HTTP 409", "HTTP 425",
                                                          "HTTP 429")):
        return _MISSING
    return _UNCHECKED


async def probe(client: LLMClient, req: Requirement) -> Outcome:
    """Send ``req``'s probe through ``client`` (or answer it from the request cache).

    Parameters
    ----------
    client : LLMClient
        The stage's client (its provider is ``req.provider``).
    req : Requirement
        The capability and its probe.

    Returns
    -------
    Outcome
        ``ok``, ``missing`` or ``not checked``, with the provider's answer.

    Raises
    ------
    RateLimitedError
        The provider kept answering 429 past the waiting budget (the stage stops anyway).
    """
    call = client.chat if req.endpoint == "chat" else client.complete
    kw = dict(req.request)
    try:
        res = await call(kw.pop("messages") if req.endpoint == "chat" else kw.pop("prompt"),
                         model=req.model, prompt_id=f"preflight:{req.capability}",
                         parse=_parser(req), max_parse_retries=0,
                         sample=["preflight", req.capability], **kw)
    except FatalAPIError as exc:  # 401/403/404, a used-up quota: this probe's answer
        client.fatal = None  # the next probe gets its own answer (check-provider lists all)
        if exc.status in (404, 405):  # no such route or model: the capability is not there
            return Outcome(req, _MISSING, f"HTTP {exc.status}: {exc.provider_message}")
        return Outcome(req, _UNCHECKED, f"HTTP {exc.status}: {exc.provider_message}", fatal=exc)
    if res.ok:
        return Outcome(req, "ok", cached=res.cached)
    error = res.error or "no answer"
    detail = error.split(": ", 1)[1] if error.startswith("malformed response: ") else error
    return Outcome(req, _classify(error), detail)


def merge_requirements(reqs: list[Requirement]) -> list[tuple[Requirement, list[str]]]:
    """One entry per distinct probe, with every stage that needs it (first-seen order).

    Parameters
    ----------
    reqs : list of Requirement
        Requirements of one provider.

    Returns
    -------
    list of (Requirement, list of str)
        Each probe and who needs it.
    """
    merged: dict[str, tuple[Requirement, list[str]]] = {}
    for r in reqs:
        entry = merged.setdefault(r.key(), (r, []))
        if r.needed_by not in entry[1]:
            entry[1].append(r.needed_by)
    return list(merged.values())


async def check_all(client: LLMClient, reqs: list[Requirement], stop_at_first: bool = False,
                    stage: str = "check-provider") -> list[Outcome]:
    """Probe every distinct requirement in order; calls are logged as ``preflight:<stage>``.

    Parameters
    ----------
    client : LLMClient
        The provider's client.
    reqs : list of Requirement
        Requirements of that provider.
    stop_at_first : bool, default=False
        Return at the first capability that is not ok.
    stage : str, default='check-provider'
        The stage the checks are for (call-log name ``preflight:<stage>``).

    Returns
    -------
    list of Outcome
        One per distinct probe checked.
    """
    out = []
    with client.stage_as(f"preflight:{stage}"):
        for req, needed_by in merge_requirements(reqs):
            outcome = await probe(client, req)
            outcome.needed_by = needed_by
            out.append(outcome)
            if stop_at_first and not outcome.ok:
                break
    return out


def failure_message(outcome: Outcome, base_url: str | None) -> str:
    """The one-line message of a capability that is not there.

    Parameters
    ----------
    outcome : Outcome
        A probe that did not pass.
    base_url : str or None
        The provider's URL (shown without credentials and query values), to name the
        provider and recognise its preset.

    Returns
    -------
    str
        What is missing, from whom, for which stage, what the provider answered, what it
        documents, and what to do.
    """
    req = outcome.requirement
    preset = recognise(base_url)
    where = f" at {redact_url(base_url)}" if base_url else ""
    what = CAPABILITY_TEXT[req.capability]
    verb = "cannot do" if outcome.status == _MISSING else "could not be checked for"
    text = (f"provider '{req.provider}'{where} (model '{req.model}') {verb} {what}, needed by "
            f"{', '.join(outcome.needed_by or [req.needed_by])}: "
            f"{' '.join(str(outcome.detail).split())[:300]}")
    if preset is not None and preset.note(req.capability):
        text += f" [{preset.label}: {preset.status(req.capability)}, {preset.note(req.capability)}]"
    if outcome.status == _MISSING:
        text += ("; use a provider or model that can (docs/llm.md, 'Provider presets') or change "
                 "the config, then rerun (cje check-provider --config ... checks every stage)")
    else:
        text += "; rerun when the provider answers (cje check-provider --config ...)"
    return text


async def run_preflight(client: LLMClient, reqs: list[Requirement], stage: str) -> None:
    """The first step of a stage: check ``reqs`` and stop at the first missing capability.

    Parameters
    ----------
    client : LLMClient
        The stage's client.
    reqs : list of Requirement
        What the stage needs from this client's provider.
    stage : str
        The stage's name (call log: ``preflight:<stage>``).

    Raises
    ------
    PreflightError
        A capability is missing or could not be checked (nothing else is sent).
    FatalAPIError
        The provider refused the probe for the key or the account (401, 403, a used-up
        quota): the same error the stage's first row would have stopped with.
    """
    for outcome in await check_all(client, reqs, stop_at_first=True, stage=stage):
        if outcome.fatal is not None:
            client.fatal = outcome.fatal
            raise outcome.fatal
        if not outcome.ok:
            raise PreflightError(failure_message(outcome, client.provider.base_url))
