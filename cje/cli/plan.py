"""``cje plan``: oracle (and probe) labels needed for a target precision, from a pilot (cje.analysis.plan).

The table shows each target's pilot status; a target whose pilot estimate is CRITICAL
is refused (exit 2, one line) unless ``--allow-critical``, and then flagged below the table.
"""

from __future__ import annotations

import argparse

from cje.atomic import atomic_write_text
from cje.errors import ConfigError, InputError

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``plan`` subcommand."""
    p = sub.add_parser(
        "plan", help="oracle labels needed for a target CI half-width or to separate two policies",
        description="From a pilot estimates.json (or a dataset: a pilot analysis is run), how many oracle labels "
                    "(and probe labels) give each policy a target CI half-width, or separate two policies by a "
                    "margin with a given power. Reads se_without_oua and oracle_variance from the results and "
                    "scales the oracle part as 1/labels (docs/api.md, 'Planning labels').")
    src = p.add_argument_group("pilot (one of)")
    src.add_argument("--pilot", action="append", metavar="ESTIMATES_JSON",
                     help="a pilot estimates.json or its folder; repeat for several seeds (pooled)")
    src.add_argument("--data", help="logged dataset JSONL: run a pilot analysis first")
    pilot = p.add_argument_group("pilot analysis (with --data)")
    pilot.add_argument("--fresh-draws-dir", help="folder of {policy}_responses.jsonl")
    pilot.add_argument("--estimator", default="auto", help="estimator of the pilot (default auto)")
    pilot.add_argument("--oracle-coverage", type=float, default=0.1,
                       help="oracle coverage of the pilot (default 0.1)")
    pilot.add_argument("--seed", type=int, default=0, help="seed of the pilot (default 0)")
    goal = p.add_argument_group("target (one of)")
    goal.add_argument("--half-width", type=float, help="target CI half-width per policy (at the pilot's level)")
    goal.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"),
                      help="separate policy A from B ('base' = logging policy); repeatable; needs --margin")
    p.add_argument("--margin", type=float, help="difference to detect with --compare")
    p.add_argument("--power", type=float, default=0.8,
                   help="power to detect --margin, and of the probe-label audit (default 0.8)")
    p.add_argument("--policy", action="append", help="plan only these policies (default: all with an estimate)")
    p.add_argument("--transport-margin", type=float, default=0.05, help="transport audit margin (default 0.05)")
    p.add_argument("--allow-critical", action="store_true",
                   help="plan also for policies whose pilot estimate is CRITICAL (refused by default: labels "
                        "narrow the interval of such an estimate but do not make it reliable)")
    p.add_argument("--plot", metavar="PNG", help="also write the CI-half-width-vs-labels figure here")
    p.add_argument("--output", metavar="CSV", help="also write the table as CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the plan table; write the figure / CSV when asked. Exit 0 (2 on bad input or a CRITICAL pilot)."""
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.analysis.plan import plan_labels

    if bool(args.pilot) == bool(args.data):
        raise ConfigError("give --pilot ESTIMATES_JSON (repeatable) or --data to run a pilot", flag="--pilot")
    if args.compare and args.half_width is not None:
        raise ConfigError("give --half-width or --compare, not both", flag="--compare")
    if args.compare is None and args.half_width is None:
        raise ConfigError("give a target: --half-width H, or --compare A B --margin D", flag="--half-width")
    pilot = args.pilot
    if args.data:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.api import analyze

        pilot = analyze(args.data, fresh_draws=args.fresh_draws_dir, estimator=args.estimator,
                        oracle_coverage=args.oracle_coverage, seed=args.seed,
                        transport_margin=args.transport_margin,
                        comparisons=[tuple(c) for c in args.compare] if args.compare else "base")
    plan = plan_labels(pilot, half_width=args.half_width,
                       compare=[tuple(c) for c in args.compare] if args.compare else None,
                       margin=args.margin, power=args.power, policies=args.policy,
                       transport_margin=args.transport_margin)
    if plan.critical and not args.allow_critical:
        first = plan.critical[0]
        why = f" ({first.reasons[0]})" if first.reasons else ""
        others = ", ".join(t.name for t in plan.critical[1:])
        also = f", and that of {others} too" if others else ""
        raise InputError(f"the pilot estimate of {first.name} is CRITICAL{why}{also}: more oracle labels narrow its interval "
                         "but do not make it reliable, so no labels are planned; fix what the status names (another "
                         "estimator, probe labels), leave it out (--policy), or pass --allow-critical to plan anyway",
                         path=plan.sources[0] if len(plan.sources) == 1 and args.pilot else None)
    print(plan.table())
    if args.output:
        import polars as pl


        atomic_write_text(args.output, pl.DataFrame(plan.to_rows()).write_csv())
        print(f"wrote {args.output}")
    if args.plot:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.viz.style import save_png

        save_png(plan.figure(), args.plot)
        print(f"wrote {args.plot}")
    return 0
