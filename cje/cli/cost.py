"""``cje cost``: tokens and money per stage and provider from the call logs, or an estimate before a run."""

from __future__ import annotations

import argparse
import json

from cje.atomic import atomic_write_text
from cje.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``cost`` subcommand."""
    p = sub.add_parser(
        "cost", help="tokens and cost per stage and provider (from the call logs, or --estimate before a run)",
        description="Sum the stage summaries of the API call logs per stage and provider (cje.llm.cost), warning "
                    "about providers without prices and about stages killed before their summary. With "
                    "--estimate, predict a run's calls and an upper bound on tokens and cost from the workflow "
                    "config instead (cje.llm.cost_estimate), after checking the config against the workflow's "
                    "strict schema; the total names the stages whose provider has no prices.")
    p.add_argument("--log", action="append", metavar="PATH",
                   help="call log file or folder of *.log (repeatable; default logs/api_calls.log)")
    p.add_argument("--config", help="workflow config (prices and provider kinds; required with --estimate)")
    p.add_argument("--estimate", action="store_true", help="estimate a run from --config before it starts")
    p.add_argument("--n-prompts", type=int, help="prompts of the run (default: prompts.n_samples)")
    p.add_argument("--prompt-tokens", type=float, help="mean prompt length in tokens (default: measured from a "
                                                        "local prompt file, else 100)")
    p.add_argument("--output", metavar="JSON", help="also write the totals as JSON (e.g. results/cost.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table; write ``--output`` when given. Exit 0 (2 on a bad config or option)."""

    cfg = None
    if args.config:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.llm.config import load_config

        cfg = load_config(args.config)
    if args.estimate:
        if cfg is None:
            raise ConfigError("--estimate needs the workflow config", flag="--config")
        if args.n_prompts is not None and args.n_prompts < 1:
            raise ConfigError(f"must be an integer >= 1, got {args.n_prompts}", flag="--n-prompts")
        if args.prompt_tokens is not None and not args.prompt_tokens > 0:  # also nan
            raise ConfigError(f"must be a number > 0, got {args.prompt_tokens}", flag="--prompt-tokens")
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.llm.config_schema import check_config_schema
        from cje.llm.cost_estimate import estimate_run

        # the workflow's own strict schema: a typo the workflow refuses is never priced with defaults
        check_config_schema(cfg, args.config)

        try:
            result = estimate_run(cfg, n_prompts=args.n_prompts, prompt_tokens=args.prompt_tokens)
        except ConfigError as exc:  # a bad policy, provider or scorer: name the file as the schema check does
            raise ConfigError(f"invalid workflow config {args.config}: {exc}") from None
    else:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.llm.cost import read_costs

        result = read_costs(args.log or ["logs/api_calls.log"], providers=(cfg or {}).get("providers"))
    print(result.table())
    if args.output:
        atomic_write_text(args.output, json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0
