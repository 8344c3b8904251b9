"""The ``generate`` stage: sample responses of one policy (logged data or fresh draws).

For every prompt (of this shard) and every ``draw_idx`` in ``range(draws_per_prompt)``
one response is sampled:

- ``chat_template`` gemma/llama3/chatml: ``/v1/completions`` on
  ``templates.render_prompt(template, system_prompt, prompt)`` with
  ``stop=[end_of_turn(template)]`` and ``top_p`` (default 1) -- the exact string the
  log-prob stage scores. For ``kind: local`` providers llama.cpp's truncations are
  switched off (``top_k=0, min_p=0, repeat_penalty=1`` in ``extra_body``) so the
  teacher-forced log-prob is the log-density of the sampling distribution.
- ``chat_template: none``: ``/v1/chat/completions`` with system + user messages;
  the provider applies its own template.

First the provider preflight (:func:`preflight_requirements`,
:mod:`cje.llm.stages.preflight`): one request with the stage's own fields, once per
endpoint and model (a passed check is cached). Every answer is kept in the per-request cache (``--request-cache``) as it arrives;
the cache key of a sample is its request plus ``sample = [policy, prompt_id,
draw_idx]``: independent draws of one prompt, and of two policies with identical
settings (a ``clone``), stay distinct samples. A rerun asks the cache first and
sends only unanswered requests. The output is published atomically at the end,
sorted by (prompt_id, draw_idx). Failed calls are rows with ``status: "error"``,
``response: null`` and the error text; when more than ``execution.max_failed_share``
of the rows failed (default 0.5: also when all did), the stage raises
``StageFailedError`` instead of writing the output (``cje.llm.stages.io.check_failed_rows``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from cje.llm import templates
from cje.llm.client.http import LLMClient, run_with_client
from cje.llm.config import (
    PolicyConfig,
    ProviderConfig,
    max_failed_share,
    policy_config,
    provider_config,
)
from cje.llm.stages.io import (
    check_failed_rows,
    read_jsonl,
    run_items,
    write_jsonl_atomic,
)
from cje.llm.stages.preflight import PROBE_PROMPT, Requirement, run_preflight
from cje.llm.stages.prompts import select_shard

log = logging.getLogger(__name__)
KEY_FIELDS = ("prompt_id", "draw_idx")
LOCAL_SAMPLING = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}


def sampling_request(policy: PolicyConfig, provider: ProviderConfig, prompt: str) -> dict:
    """The request for one sample: ``{"endpoint": "completions"|"chat", ...kwargs}``.

    Completions: ``prompt`` (rendered), ``stop``, ``temperature``, ``top_p`` (1 by default),
    ``max_tokens``, ``extra_body`` (policy.extra_body; local: LOCAL_SAMPLING forced).
    Chat: ``messages`` (system if non-empty, user), same sampling fields.

    Parameters
    ----------
    policy : PolicyConfig
        The policy.
    provider : ProviderConfig
        Its provider.
    prompt : str
        The user prompt.

    Returns
    -------
    dict
        The endpoint and the request's fields.
    """
    extra = dict(policy.extra_body)
    if provider.kind == "local":
        extra.update(LOCAL_SAMPLING)  # forced: truncated sampling breaks the log-probs
    common = {"model": policy.model, "temperature": policy.temperature,
              "top_p": policy.top_p, "max_tokens": policy.max_tokens,
              "extra_body": extra or None}
    if policy.chat_template != "none":
        return {"endpoint": "completions", **common,
                "prompt": templates.render_prompt(policy.chat_template, policy.system_prompt,
                                                  prompt),
                "stop": [templates.end_of_turn(policy.chat_template)]}
    messages = ([{"role": "system", "content": policy.system_prompt}]
                if policy.system_prompt else []) + [{"role": "user", "content": prompt}]
    return {"endpoint": "chat", **common, "messages": messages}


async def sample_one(client: LLMClient, policy: PolicyConfig, provider: ProviderConfig,
                     item: dict) -> dict:
    """Sample one response for ``item`` (prompt_id, prompt, draw_idx); return its row.

    On a local provider each sample gets a reproducible seed (:func:`sample_seed`) unless the
    policy sets one; the cache key's ``sample`` is [policy, prompt_id, draw_idx].

    Parameters
    ----------
    client : LLMClient
        The policy's client.
    policy : PolicyConfig
        The policy.
    provider : ProviderConfig
        Its provider.
    item : dict
        ``prompt_id``, ``prompt``, ``draw_idx``.

    Returns
    -------
    dict
        The output row (``status: "error"`` and ``response: null`` when the call failed).
    """
    req = sampling_request(policy, provider, item["prompt"])
    if provider.kind == "local" and "seed" not in (req["extra_body"] or {}):
        # reproducible samples: one seed per (policy, prompt, draw) unless the policy sets one
        req["extra_body"] = {**(req["extra_body"] or {}),
                             "seed": sample_seed(policy.name, item["prompt_id"], item["draw_idx"])}
    endpoint = req.pop("endpoint")
    finish_reason, token_ids = None, None
    # independent draws (also of two policies with identical settings): distinct cache keys
    sample = [policy.name, item["prompt_id"], item["draw_idx"]]
    if endpoint == "completions":
        res = await client.complete(req.pop("prompt"), prompt_id=item["prompt_id"], sample=sample,
                                    **req)
        text = res.value.text if res.ok else None
        if res.ok:
            finish_reason = getattr(res.value, "finish_reason", None)
            token_ids = (getattr(res.value, "model_extra", None) or {}).get("token_ids")
    else:
        res = await client.chat(req.pop("messages"), prompt_id=item["prompt_id"], sample=sample,
                                **req)
        text = res.value if res.ok else None
    row = {"prompt_id": item["prompt_id"], "prompt": item["prompt"], "policy": policy.name,
           "draw_idx": item["draw_idx"], "response": text,
           "status": "ok" if res.ok else "error", "error": res.error, "model": policy.model,
           "usage": res.usage, "finish_reason": finish_reason}
    if token_ids is not None:  # the embedded server's sampled token path (teacher forcing scores it)
        row["token_ids"] = list(token_ids)
    return row


def preflight_requirements(policy: PolicyConfig, provider: ProviderConfig) -> list[Requirement]:
    """What sampling ``policy`` needs from its provider: completions, or chat for ``none``.

    The probe is the stage's own request (:func:`sampling_request`: endpoint, model,
    sampling fields, stop, ``extra_body``) on a short prompt with ``max_tokens=1``, so a
    field the provider refuses is found before the first row.

    Parameters
    ----------
    policy : PolicyConfig
        The policy.
    provider : ProviderConfig
        Its provider.

    Returns
    -------
    list of Requirement
        One requirement (:mod:`cje.llm.stages.preflight`).
    """
    req = sampling_request(policy, provider, PROBE_PROMPT)
    endpoint = req.pop("endpoint")
    req.pop("model")
    req["max_tokens"] = 1
    return [Requirement("completions" if endpoint == "completions" else "chat", provider.name,
                        policy.model, f"generate (policy '{policy.name}')", endpoint, req)]


def sample_seed(policy: str, prompt_id: str, draw_idx: int) -> int:
    """Stable 31-bit seed for one sample (blake2b of policy, prompt_id, draw_idx).

    Parameters
    ----------
    policy : str
        The policy.
    prompt_id : str
        The prompt.
    draw_idx : int
        The draw.

    Returns
    -------
    int
        In [0, 2**31).
    """
    digest = hashlib.blake2b(f"{policy}\x1f{prompt_id}\x1f{draw_idx}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def generate_responses(cfg: dict, policy: str, prompts: str, output: str,
                       draws_per_prompt: int = 1, shard: int = 0, num_shards: int = 1,
                       request_cache: str | None = None,
                       rate_limit_dir: str | None = None,
                       api_log: str | None = "logs/api_calls.log", retry_errors: bool = True,
                       debug: bool = False) -> dict:
    """Run the ``generate`` stage for ``policy`` and write ``output`` atomically.

    Output rows: see docs/contracts.md (``data/responses/{policy}.jsonl``), sorted by
    (prompt_id, draw_idx).

    Parameters
    ----------
    cfg : dict
        The workflow config.
    policy : str
        The policy's name.
    prompts : str
        The prompts JSONL (prompt_id, prompt).
    output : str
        The output path.
    draws_per_prompt : int, default=1
        Draws per prompt K.
    shard, num_shards : int, default=0, 1
        Shard I of N (by sorted prompt_id position).
    request_cache : str or None, default=None
        Request-cache folder (None: no cache).
    rate_limit_dir : str or None, default=None
        Rate-limit state folder (None: limits in this process only).
    api_log : str or None, default='logs/api_calls.log'
        The call log.
    retry_errors : bool, default=True
        Ask again for cached final errors.
    debug : bool, default=False
        Log prompts and answers.

    Returns
    -------
    dict
        Counts.

    Raises
    ------
    ConfigError
        A bad policy or provider config (also a malformed API key), or a bad shard.
    ValueError
        ``draws_per_prompt`` < 1.
    InputError
        A bad prompts file.
    StageFailedError
        More than ``execution.max_failed_share`` of the rows failed (nothing written).
    PreflightError
        The provider cannot do what the policy needs (:func:`preflight_requirements`);
        nothing else is sent.
    """
    pol = policy_config(cfg, policy)
    prov = provider_config(cfg, pol.provider)
    max_share = max_failed_share(cfg)
    if draws_per_prompt < 1:
        raise ValueError("draws_per_prompt must be >= 1")
    rows = read_jsonl(prompts, required=("prompt_id", "prompt"))
    mine = select_shard([r["prompt_id"] for r in rows], shard, num_shards)
    items = [{"prompt_id": r["prompt_id"], "prompt": r["prompt"], "draw_idx": k}
             for r in rows if r["prompt_id"] in mine for k in range(draws_per_prompt)]
    del rows

    async def body(client: LLMClient) -> tuple[list[dict], dict]:
        if items:  # first: can the endpoint sample as the policy asks (cached once passed)
            await run_preflight(client, preflight_requirements(pol, prov), f"generate:{policy}")
        return await run_items(items, lambda it: sample_one(client, pol, prov, it),
                               desc=f"generate {policy}", workers=prov.max_concurrency)

    out, counts = run_with_client(prov, f"generate:{policy}", api_log, body, debug=debug,
                                  request_cache=request_cache, retry_errors=retry_errors,
                                  rate_limit_dir=rate_limit_dir)
    out.sort(key=lambda r: (r["prompt_id"], r["draw_idx"]))
    check_failed_rows(f"generate:{policy}", out, max_share, api_log)
    write_jsonl_atomic(output, out)
    counts["written"] = len(out)
    counts["errors_in_output"] = sum(r["status"] != "ok" for r in out)
    log.info("generate %s: %s -> %s", policy, counts, Path(output))
    return counts
