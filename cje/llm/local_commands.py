"""CLI commands ``cje logprobs`` (teacher-forced log-probs stage) and ``cje serve-local``.

``cje logprobs --config C --responses data/responses/base.jsonl --policies a,b
--output-dir D [--shard I --num-shards N] [--request-cache DIR] [--rate-limit-dir DIR]``
scores every base response under each listed policy and writes ``D/{policy}.jsonl``
(rows in docs/contracts.md plus ``draw_idx``, ``logprob_temperature``,
``fallback_reason``, ``token_path``, ``response_sha256``, ``model``). Every answer
is kept in the per-request cache (``cje.llm.request_cache``), so a rerun, a new
shard layout or a new response set re-sends only requests never answered (the
request holds the rendered text, so an unchanged response under an unchanged policy
is never paid twice), and the output is published atomically. A base response whose
generation failed gives an ``error`` row without a call. Shards are
``select_shard`` (sorted prompt_ids, position mod N), as in ``cje generate``.

Optional response-row fields it uses: ``finish_reason`` (``length``: the response
was cut by max_tokens, so the end-of-turn marker, never sampled, is not scored;
without the field a row whose ``usage.completion_tokens`` reached the generating
policy's ``max_tokens`` counts as cut; rows say ``end_of_turn_scored``) and ``token_ids`` (the sampled token path returned by the embedded server:
scored exactly instead of the text's canonical tokenization).

``cje serve-local [--config C] [--port P] [--threads N]`` runs the embedded model
server in the foreground and prints its base URL; point a provider's
``base_url`` at it to share one server between stages.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

from cje.errors import ConfigError
from cje.llm.client import LLMClient, run_with_client
from cje.llm.config import load_config, policy_config, provider_config
from cje.llm.progress import Progress
from cje.llm.prompts import select_shard
from cje.llm.stage_io import publish_jsonl, read_jsonl
from cje.llm.teacher_forcing import Score, refusal_reason, score_response

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
    """
    if resp.get("finish_reason") is not None:
        return resp["finish_reason"] == "length"
    used = (resp.get("usage") or {}).get("completion_tokens")
    limit = max_tokens_of.get(resp.get("policy"))
    return used is not None and limit is not None and used >= limit


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

    Inputs: workflow config path, the base responses JSONL, policy names (each must be
    a safe file name: ``cje.paths.safe_component``), output directory, shard
    selection, request-cache folder (None: no cache), rate-limit state folder, API
    call log path. Writes ``output_dir/{policy}.jsonl`` atomically (sorted by
    prompt_id, draw_idx).
    """
    if not 0 <= shard < num_shards:
        raise ConfigError(f"--shard {shard} is not in [0, {num_shards})", key="--shard")
    cfg = load_config(config_path)
    pols = [policy_config(cfg, name) for name in policies]  # names checked: they become files
    rows = read_jsonl(responses_path, required=("prompt_id", "prompt", "response"))
    mine = select_shard([r["prompt_id"] for r in rows], shard, num_shards)
    responses = [r for r in rows if r["prompt_id"] in mine]
    del rows
    out_dir = Path(output_dir)
    max_tokens_of = {name: int(spec.get("max_tokens", 256)) for name, spec in (cfg.get("policies") or {}).items()
                     if isinstance(spec, dict)}
    summary: dict[str, dict] = {}
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
                for pol, final, todo in plans:
                    with Progress(len(responses), f"logprobs {pol.name}",
                                  initial=len(responses) - len(todo)) as bar:
                        final.update(await _score_policy(client, pol, todo, provider.kind == "local",
                                                         bar, max_tokens_of))

            # starts/stops the local server at the first uncached call, call log + stage_summary
            run_with_client(provider, "logprobs:" + ",".join(p.name for p in provider_pols), api_log,
                            body, request_cache=request_cache, rate_limit_dir=rate_limit_dir)
        for pol, final, todo in plans:
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


def _cmd_logprobs(args: argparse.Namespace) -> int:
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise ConfigError("no policy names given", key="--policies")
    summary = run_logprobs(args.config, args.responses, policies, args.output_dir, args.shard,
                           args.num_shards, args.request_cache, args.rate_limit_dir, args.api_log)
    return 0 if summary else 1


def _local_provider_settings(config_path: str | None) -> tuple[int, str | None]:
    """(n_threads, model_package) of the first ``kind: local`` provider in the config."""
    if not config_path:
        return 1, None
    cfg = load_config(config_path)
    for name, spec in (cfg.get("providers") or {}).items():
        if isinstance(spec, dict) and spec.get("kind") == "local":
            p = provider_config(cfg, name)
            return p.n_threads, p.model_package
    raise ConfigError("no provider with kind 'local' in the config", key="providers")


def _cmd_serve_local(args: argparse.Namespace) -> int:
    from cje.llm.local_model import MODEL_PACKAGE
    from cje.llm.local_server import _health, local_server

    threads, package = _local_provider_settings(args.config)
    threads = args.threads or threads
    with local_server(n_threads=threads, port=args.port, model_package=package or MODEL_PACKAGE) as url:
        print(url, flush=True)
        log.info("serving the embedded model at %s with %d thread(s); Ctrl-C or SIGTERM stops it", url, threads)
        failures = 0
        try:
            while failures < 3:
                time.sleep(2.0)
                failures = 0 if _health(url[: -len("/v1")]) else failures + 1
        except KeyboardInterrupt:
            return 0
    print("cje serve-local: the server stopped answering health checks", file=sys.stderr)
    return 1


def register(subparsers) -> None:
    """Add ``logprobs`` and ``serve-local`` to the ``cje`` CLI."""
    p = subparsers.add_parser("logprobs", help="teacher-forced log-probs of the base responses under policies",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("--config", required=True, help="workflow config YAML")
    p.add_argument("--responses", required=True, help="base responses JSONL (cje generate output)")
    p.add_argument("--policies", required=True, help="comma-separated policy names to (re)score")
    p.add_argument("--output-dir", required=True, help="writes OUTPUT_DIR/{policy}.jsonl")
    p.add_argument("--shard", type=int, default=0, help="this job's shard index (default 0)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards (default 1)")
    from cje.llm.commands import request_cache_flags
    request_cache_flags(p)
    p.add_argument("--api-log", default="logs/api_calls.log", help="JSON-lines API call log")
    p.set_defaults(func=_cmd_logprobs)
    s = subparsers.add_parser("serve-local", help="run the embedded local model server in the foreground")
    s.add_argument("--config", default=None, help="workflow config (threads/model of the local provider)")
    s.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    s.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: config or 1)")
    s.set_defaults(func=_cmd_serve_local)
