"""CLI commands ``cje logprobs`` (the teacher-forced log-prob stage, :mod:`cje.llm.stages.logprobs`) and ``cje serve-local``.

``cje logprobs --config C --responses data/responses/base.jsonl --policies a,b
--output-dir D [--shard I --num-shards N] [--request-cache DIR] [--rate-limit-dir DIR]``
scores every base response under each listed policy and writes ``D/{policy}.jsonl``.

``cje serve-local [--config C] [--port P] [--threads N]`` runs the embedded model
server in the foreground and prints its base URL; point a provider's
``base_url`` at it to share one server between stages.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from cje.cli.llm import quiet_http, request_cache_flags
from cje.errors import ConfigError
from cje.llm.config import load_config, provider_config
from cje.llm.stages.logprobs import run_logprobs

log = logging.getLogger("cje.serve_local")


def _cmd_logprobs(args: argparse.Namespace) -> int:
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise ConfigError("no policy names given", flag="--policies")
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
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.llm.local.model import MODEL_PACKAGE
    from cje.llm.local.server import _health, local_server

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
    request_cache_flags(p)
    p.add_argument("--api-log", default="logs/api_calls.log", help="JSON-lines API call log")
    p.set_defaults(func=quiet_http(_cmd_logprobs))
    s = subparsers.add_parser("serve-local", help="run the embedded local model server in the foreground")
    s.add_argument("--config", default=None, help="workflow config (threads/model of the local provider)")
    s.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    s.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: config or 1)")
    s.set_defaults(func=_cmd_serve_local)
