"""CLI subcommands of the LLM stages: prompts, generate, judge, oracle, merge, dataset, check-provider.

Flags are exactly those of docs/contracts.md, plus ``--api-log`` (default
``logs/api_calls.log``), ``--debug-log`` (also log prompts and answers) and
``--no-retry-errors`` (keep cached failed calls instead of asking again).
Every API stage takes ``--request-cache DIR`` (the per-request answer cache shared
by every stage and shard of a provider; default ``data/cache/requests``) and
``--rate-limit-dir DIR`` (shared rate-limit state, so concurrent jobs of one
provider hold its limits together); docs/llm.md.

``cje check-provider --config C [--stages generate,logprobs,judge,oracle]`` sends one
tiny request per capability the configured stages need (the same checks every stage
runs first; :mod:`cje.llm.stages.preflight`), prints one line per capability and exits
2 with one line naming the first missing one.

The HTTP stack's per-request lines (``HTTP Request: POST ...`` of httpx, openai's
debug lines) are shown only with ``cje -v``; they never carry the key, URL credentials
or query values (:func:`cje.llm.scrub.set_http_log_level`, ``scrub_http_logs``).
"""

from __future__ import annotations

import argparse
import functools
import sys

from cje.errors import ConfigError


def _config(path: str | None) -> dict:
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.llm.config import load_config
    if not path:
        raise ConfigError("is required for this stage", flag="--config")
    return load_config(path)


def quiet_http(func):
    """Wrap a command: the HTTP stack logs per request only with ``cje -v`` (then the command).

    Parameters
    ----------
    func : callable
        The command, ``func(args) -> int``.

    Returns
    -------
    callable
        The command, setting the HTTP loggers' level from ``args.verbose`` first.
    """
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.llm.scrub import set_http_log_level
        set_http_log_level(bool(getattr(args, "verbose", False)))
        return func(args)
    return run


def request_cache_flags(p: argparse.ArgumentParser) -> None:
    """``--request-cache DIR`` and ``--rate-limit-dir DIR`` (every API stage)."""
    p.add_argument("--request-cache", default="data/cache/requests", metavar="DIR",
                   help="per-request answer cache shared by every stage and shard of a "
                        "provider (default data/cache/requests); a rerun sends only "
                        "requests never answered")
    p.add_argument("--rate-limit-dir", default=None, metavar="DIR",
                   help="folder holding the providers' shared rate-limit state: every job "
                        "using it keeps requests/tokens per minute together (default: "
                        "limits hold per process)")


def _api_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="workflow config YAML")
    p.add_argument("--shard", type=int, default=0, help="this job's shard index (0-based)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards")
    request_cache_flags(p)
    p.add_argument("--no-retry-errors", action="store_true",
                   help="keep cached failed calls instead of asking again")
    p.add_argument("--api-log", default="logs/api_calls.log", help="JSON-lines API call log")
    p.add_argument("--debug-log", action="store_true",
                   help="also write prompts and answers to the API log")


def at_least_one(value: int | None, flag: str) -> int | None:
    """``value`` of an integer flag that must be >= 1 when given (None: not given).

    Parameters
    ----------
    value : int or None
        The parsed flag.
    flag : str
        The flag, named in the error.

    Returns
    -------
    int or None
        ``value``.

    Raises
    ------
    ConfigError
        ``value`` is 0 or negative (never replaced by a default in silence).
    """
    if value is not None and value < 1:
        raise ConfigError(f"must be an integer >= 1, got {value}", flag=flag)
    return value


def _draws_per_prompt(args: argparse.Namespace, cfg: dict) -> int:
    """``--draws-per-prompt``, else ``fresh_draws.draws_per_prompt`` (default 1), checked."""
    if args.draws_per_prompt is not None:
        return at_least_one(args.draws_per_prompt, "--draws-per-prompt")
    value = (cfg.get("fresh_draws") or {}).get("draws_per_prompt", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be an integer >= 1, got {value!r}", key="fresh_draws.draws_per_prompt")
    return value


def _cmd_prompts(args: argparse.Namespace) -> int:
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.llm.stages.prompts import make_prompts
    cfg = _config(args.config)
    pc = cfg.get("prompts") or {}
    counts = make_prompts(args.source or pc.get("source", "data/default_prompts.jsonl"),
                          args.output,
                          at_least_one(args.n_samples, "--n-samples") if args.n_samples is not None
                          else pc.get("n_samples"),
                          args.seed if args.seed is not None else int(pc.get("seed", 42)))
    print(f"prompts: {counts} -> {args.output}", file=sys.stderr)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.llm.stages.generate import generate_responses
    cfg = _config(args.config)
    k = _draws_per_prompt(args, cfg)
    counts = generate_responses(cfg, args.policy, args.prompts, args.output,
                                draws_per_prompt=k, shard=args.shard,
                                num_shards=args.num_shards, request_cache=args.request_cache,
                                rate_limit_dir=args.rate_limit_dir, api_log=args.api_log,
                                retry_errors=not args.no_retry_errors, debug=args.debug_log)
    print(f"generate {args.policy}: {counts} -> {args.output}", file=sys.stderr)
    return 0


def _cmd_score(role: str):
    def run(args: argparse.Namespace) -> int:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.llm.stages.judge import score_responses
        cfg = _config(args.config)
        counts = score_responses(cfg, role, args.input, args.output,
                                 coverage=getattr(args, "coverage", None),
                                 seed=getattr(args, "seed", None), shard=args.shard,
                                 num_shards=args.num_shards,
                                 request_cache=args.request_cache,
                                 rate_limit_dir=args.rate_limit_dir, api_log=args.api_log,
                                 retry_errors=not args.no_retry_errors, debug=args.debug_log)
        print(f"{role} {args.input}: {counts} -> {args.output}", file=sys.stderr)
        return 0
    return run


def _cmd_check_provider(args: argparse.Namespace) -> int:
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.llm.config_schema import check_config_schema
    from cje.llm.stages.check_provider import (
        check_providers,
        config_requirements,
        first_failure,
        format_report,
        parse_stages,
    )
    stages = parse_stages(args.stages)
    cfg = _config(args.config)
    # the workflow's strict schema and every policy, scorer and provider of the stages, before
    # the first request: a config the workflow refuses is never sent anywhere
    check_config_schema(cfg, args.config)
    try:
        config_requirements(cfg, stages)
    except ConfigError as exc:
        raise ConfigError(f"invalid workflow config {args.config}: {exc}") from None
    reports = check_providers(cfg, stages, request_cache=args.request_cache,
                              api_log=args.api_log, rate_limit_dir=args.rate_limit_dir)
    print(format_report(reports), flush=True)
    failure = first_failure(reports)
    if failure is not None:
        raise failure
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.llm.stages.dataset import merge_shards
    n = merge_shards(args.inputs, args.output)
    print(f"merge: {len(args.inputs)} files -> {n} rows in {args.output}", file=sys.stderr)
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.llm.stages.dataset import assemble_dataset, format_summary
    cfg = _config(args.config)
    summary = assemble_dataset(cfg, args.responses_dir, args.logprobs_dir, args.judge_dir,
                               args.oracle_dir, args.output, args.fresh_draws_dir,
                               args.parquet_output, args.parquet_fresh_draws_dir)
    print(format_summary(summary), file=sys.stderr)
    return 0


def register(subparsers) -> None:
    """Add the LLM stage subcommands to the ``cje`` CLI (each sets ``func``)."""
    p = subparsers.add_parser("prompts", help="select prompts (local JSONL or HF dataset)")
    p.add_argument("--config", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--source", default=None, help="overrides prompts.source")
    p.add_argument("--n-samples", type=int, default=None, help="overrides prompts.n_samples")
    p.add_argument("--seed", type=int, default=None, help="overrides prompts.seed")
    p.set_defaults(func=quiet_http(_cmd_prompts))

    p = subparsers.add_parser("generate", help="sample responses of one policy")
    p.add_argument("--policy", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--draws-per-prompt", type=int, default=None,
                   help="responses per prompt (default fresh_draws.draws_per_prompt)")
    _api_flags(p)
    p.set_defaults(func=quiet_http(_cmd_generate))

    for role, helptext in (("judge", "judge-score every response"),
                           ("oracle", "oracle-label a seeded subset of responses")):
        p = subparsers.add_parser(role, help=helptext)
        p.add_argument("--input", required=True, help="responses JSONL")
        p.add_argument("--output", required=True)
        if role == "oracle":
            p.add_argument("--coverage", type=float, default=None,
                           help="share of rows labelled (default oracle.coverage)")
            p.add_argument("--seed", type=int, default=None,
                           help="selection seed (default oracle.seed)")
        _api_flags(p)
        p.set_defaults(func=quiet_http(_cmd_score(role)))

    p = subparsers.add_parser("check-provider",
                              help="check that the providers can do what the LLM stages need")
    p.add_argument("--config", required=True, help="workflow config YAML")
    p.add_argument("--stages", default=None,
                   help="comma-separated stages to check: generate,logprobs,judge,oracle "
                        "(default: all)")
    request_cache_flags(p)
    p.add_argument("--api-log", default="logs/api_calls.log", help="JSON-lines API call log")
    p.set_defaults(func=quiet_http(_cmd_check_provider))

    p = subparsers.add_parser("merge", help="gather shard files: dedupe, sort")
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_merge)

    p = subparsers.add_parser("dataset", help="assemble cje_dataset.jsonl and fresh draws")
    p.add_argument("--config", required=True)
    p.add_argument("--responses-dir", required=True)
    p.add_argument("--logprobs-dir", required=True)
    p.add_argument("--judge-dir", required=True)
    p.add_argument("--oracle-dir", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--fresh-draws-dir", required=True)
    p.add_argument("--parquet-output", help="also write the logged dataset as Parquet here")
    p.add_argument("--parquet-fresh-draws-dir", help="also write {policy}_responses.parquet here")
    p.set_defaults(func=_cmd_dataset)
