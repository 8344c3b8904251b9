"""The ``logprobs`` stage (``cje logprobs``): teacher-forced log-probs of the base responses under each policy.

Before the first row of a provider, the preflight checks that it returns prompt
log-probs (echo) at each policy's temperature (:func:`preflight_requirements`,
:mod:`cje.llm.stages.preflight`); one request per (endpoint, model, temperature), cached
once passed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path

from cje.errors import ConfigError
from cje.llm.client.http import LLMClient, run_with_client
from cje.llm.config import (
    PolicyConfig,
    ProviderConfig,
    load_config,
    max_failed_share,
    policy_config,
    provider_config,
)
from cje.llm.stages.io import check_failed_rows, publish_jsonl, read_jsonl
from cje.llm.stages.preflight import PROBE_ECHO_TEXT, Requirement, run_preflight
from cje.llm.stages.progress import Progress
from cje.llm.stages.prompts import select_shard
from cje.llm.stages.teacher_forcing import Score, refusal_reason, score_response

__all__ = ["run_logprobs", "cut_by_max_tokens", "preflight_requirements"]

log = logging.getLogger("cje.logprobs")
KEY_FIELDS = ("prompt_id", "draw_idx")


def _sha(resp: dict) -> str:
    """Fingerprint of what is scored: the response text and its token ids (if any)."""
    key = json.dumps([resp.get("response") or "", resp.get("token_ids")])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def cut_by_max_tokens(resp: dict, max_tokens_of: dict[str, int]) -> bool:
    """True if a response row was cut by max_tokens (so it has no sampled end-of-turn).

    Uses ``finish_reason`` when present; otherwise ``usage.completion_tokens >=
    max_tokens`` of the policy that generated the row (``max_tokens_of[row.policy]``).

    Parameters
    ----------
    resp : dict
        A response row.
    max_tokens_of : dict of str to int
        ``max_tokens`` of each policy.

    Returns
    -------
    bool
        Whether the response was cut.
    """
    if resp.get("finish_reason") is not None:
        return resp["finish_reason"] == "length"
    used = (resp.get("usage") or {}).get("completion_tokens")
    limit = max_tokens_of.get(resp.get("policy"))
    return used is not None and limit is not None and used >= limit


def preflight_requirements(policy: PolicyConfig, provider: ProviderConfig) -> list[Requirement]:
    """What teacher-forcing ``policy`` needs: prompt log-probs (echo) at its temperature.

    The probe is the stage's request shape (``echo=True, logprobs=1``, ``max_tokens`` 0 on
    the embedded server, else 1, the policy's temperature) on a short plain prompt. A
    policy the stage refuses anyway (:func:`~cje.llm.stages.teacher_forcing.refusal_reason`)
    needs nothing: its rows are errors without a call.

    Parameters
    ----------
    policy : PolicyConfig
        The policy.
    provider : ProviderConfig
        Its provider.

    Returns
    -------
    list of Requirement
        None or one requirement (:mod:`cje.llm.stages.preflight`).
    """
    if refusal_reason(policy):
        return []
    request = {"prompt": PROBE_ECHO_TEXT, "max_tokens": 0 if provider.kind == "local" else 1,
               "temperature": policy.temperature, "echo": True, "logprobs": 1}
    return [Requirement("prompt_logprobs", provider.name, policy.model,
                        f"logprobs (policy '{policy.name}')", "completions", request,
                        temperature=policy.temperature)]


def _row(resp: dict, policy, score: Score) -> dict:
    return {
        "prompt_id": resp["prompt_id"],
        "draw_idx": resp.get("draw_idx", 0),
        "policy": policy.name,
        **score.as_row(),
        "model": policy.model,
        "response_sha256": _sha(resp),
    }


async def _score_policy(client: LLMClient, policy, todo: list[dict],
                        embedded_server: bool, progress: Progress,
                        max_tokens_of: dict[str, int]) -> dict[tuple, dict]:
    async def one(resp: dict) -> dict:
        with_eot = not cut_by_max_tokens(resp, max_tokens_of)
        score = await score_response(
            client, policy, resp["prompt"], resp["response"], str(resp["prompt_id"]),
            embedded_server, include_end_of_turn=with_eot, response_token_ids=resp.get("token_ids"))
        return {**_row(resp, policy, score), "end_of_turn_scored": with_eot}

    out: dict[tuple, dict] = {}
    tasks = [asyncio.ensure_future(one(r)) for r in todo]
    try:
        for fut in asyncio.as_completed(tasks):
            row = await fut
            out[(row["prompt_id"], row["draw_idx"])] = row
            progress.update(1)
    finally:
        for t in tasks:
            t.cancel()
    return out


def run_logprobs(config_path: str, responses_path: str, policies: list[str], output_dir: str,
                 shard: int = 0, num_shards: int = 1,
                 request_cache: str | None = None,
                 rate_limit_dir: str | None = None,
                 api_log: str = "logs/api_calls.log") -> dict[str, dict]:
    """Run the log-prob stage; return ``{policy: {"ok": n, "error": n, "offsets": n, "two_call": n}}``.

    Writes ``output_dir/{policy}.jsonl`` atomically (sorted by prompt_id, draw_idx). Rows
    whose base response is not available, or whose policy is refused
    (:func:`cje.llm.stages.teacher_forcing.refusal_reason`), are error rows without a call.
    When more than ``execution.max_failed_share`` of the rows of a policy that were scored
    failed, no file is written (:func:`cje.llm.stages.io.check_failed_rows`).

    Parameters
    ----------
    config_path : str
        The workflow config path.
    responses_path : str
        The base responses JSONL.
    policies : list of str
        Policy names (each must be a safe file name: ``cje.names.safe_component``).
    output_dir : str
        The output directory.
    shard, num_shards : int, default=0, 1
        The shard selection.
    request_cache : str or None, default=None
        Request-cache folder (None: no cache).
    rate_limit_dir : str or None, default=None
        Rate-limit state folder.
    api_log : str, default='logs/api_calls.log'
        API call log path.

    Returns
    -------
    dict of str to dict
        Per policy the counts (also ``scored``: rows scored, cached or sent).

    Raises
    ------
    ConfigError
        A bad shard, config, policy or provider (also a malformed API key).
    InputError
        A bad responses file.
    StageFailedError
        More than ``execution.max_failed_share`` of the scored rows of a policy failed
        (nothing written).
    PreflightError
        A provider cannot return prompt log-probs at a policy's temperature
        (:func:`preflight_requirements`); nothing else is sent, nothing written.
    """
    if not 0 <= shard < num_shards:
        raise ConfigError(f"--shard {shard} is not in [0, {num_shards})", flag="--shard")
    cfg = load_config(config_path)
    max_share = max_failed_share(cfg)
    pols = [policy_config(cfg, name) for name in policies]  # names checked: they become files
    rows = read_jsonl(responses_path, required=("prompt_id", "prompt", "response"))
    mine = select_shard([r["prompt_id"] for r in rows], shard, num_shards)
    responses = [r for r in rows if r["prompt_id"] in mine]
    del rows
    out_dir = Path(output_dir)
    max_tokens_of = {name: int(spec.get("max_tokens", 256)) for name, spec in (cfg.get("policies") or {}).items()
                     if isinstance(spec, dict)}
    summary: dict[str, dict] = {}
    scored_plans = []  # (policy, final rows, rows asked about) of every provider
    by_provider: dict[str, list] = {}
    for pol in pols:
        by_provider.setdefault(pol.provider, []).append(pol)
    for provider_name, provider_pols in by_provider.items():
        provider = provider_config(cfg, provider_name)
        plans = []
        for pol in provider_pols:
            refused = refusal_reason(pol)  # no call can fix it: error rows without a server
            final, todo = {}, []
            for r in responses:
                key = (r["prompt_id"], r.get("draw_idx", 0))
                if r.get("status", "ok") != "ok" or r["response"] is None:
                    reason = f"base response not available: {r.get('error') or 'status ' + str(r.get('status'))}"
                    final[key] = _row(r, pol, Score(None, None, None, "error", reason))
                elif refused:
                    final[key] = _row(r, pol, Score(None, None, None, "error", refused))
                else:
                    todo.append(r)
            plans.append((pol, final, todo))
        if any(todo for *_, todo in plans):
            async def body(client: LLMClient, plans=plans, provider=provider) -> None:
                # first: can the endpoint teacher-force (prompt log-probs at each temperature)
                await run_preflight(client, [r for pol, _, todo in plans if todo
                                             for r in preflight_requirements(pol, provider)],
                                    "logprobs:" + ",".join(p.name for p in provider_pols))
                for pol, final, todo in plans:
                    with Progress(len(responses), f"logprobs {pol.name}",
                                  initial=len(responses) - len(todo)) as bar:
                        final.update(await _score_policy(client, pol, todo, provider.kind == "local",
                                                         bar, max_tokens_of))

            # starts/stops the local server at the first uncached call, call log + stage_summary
            run_with_client(provider, "logprobs:" + ",".join(p.name for p in provider_pols), api_log,
                            body, request_cache=request_cache, rate_limit_dir=rate_limit_dir)
        scored_plans += plans
    for pol, final, todo in scored_plans:  # before anything is written: fail loudly
        asked = sorted((final[(r["prompt_id"], r.get("draw_idx", 0))] for r in todo),
                       key=lambda row: (row["prompt_id"], row["draw_idx"]))
        check_failed_rows(f"logprobs:{pol.name}", asked, max_share, api_log)
    for pol, final, todo in scored_plans:
        out_rows = list(final.values())
        publish_jsonl(out_dir / f"{pol.name}.jsonl", out_rows, KEY_FIELDS)
        counts = {"ok": 0, "error": 0, "offsets": 0, "two_call": 0, "scored": len(todo)}
        for row in out_rows:
            counts["ok" if row["status"] == "ok" else "error"] += 1
            if row["status"] == "ok":
                counts[row["method"]] += 1
        summary[pol.name] = counts
        log.info("logprobs %s: %d ok (%d offsets, %d two_call), %d error, %d scored (cached or sent)",
                 pol.name, counts["ok"], counts["offsets"], counts["two_call"], counts["error"], len(todo))
        errors = sorted({str(r["error"]).split(";")[0] for r in out_rows if r["status"] != "ok"})
        for e in errors[:5]:
            log.warning("logprobs %s error kind: %s", pol.name, e)
    return summary
