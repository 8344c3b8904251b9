"""``cje analyze``: estimates, CIs and diagnostics for every target policy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "run", "format_summary", "add_output_flags"]


def add_output_flags(p: argparse.ArgumentParser, what: str) -> None:
    """``--json`` (``what`` as one JSON object on stdout) and ``--quiet`` (nothing but errors),
    mutually exclusive; the logging level follows ``--quiet`` (cje.cli.main)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true",
                       help=f"print {what} as one JSON object on stdout (keys in docs/api.md) instead of text")
    group.add_argument("--quiet", action="store_true", help="print nothing but errors")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` subcommand."""
    p = sub.add_parser("analyze", help="estimate each target policy's value from a logged dataset",
                       description="Estimate each target policy's oracle-scale value with honest CIs. "
                                   "Writes OUT/estimates.json, OUT/estimates.csv and OUT/plot_data.npz "
                                   "(and OUT/plots/ with --plots) as one set: a failed or killed run "
                                   "leaves the previous set. Every numeric option is checked (range, "
                                   "finite, against the data) before any estimate is computed.")
    p.add_argument("--data", required=True, help="logged dataset, JSONL or Parquet (base-policy rows)")
    p.add_argument("--fresh-draws-dir", help="folder of {policy}_responses.jsonl or .parquet (needed by naive, direct, DR)")
    p.add_argument("--estimator", required=True, help="estimator name (e.g. calibrated-ips, direct, dr-cpo)")
    p.add_argument("--oracle-coverage", type=float, default=1.0,
                   help="fraction of logged rows whose oracle label calibration may use (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the coverage mask, folds and probes")
    p.add_argument("--probe-coverage", type=float, default=0.0,
                   help="fraction of each target's labelled fresh draws used for the transport audit "
                        "and the direct residual correction (default 0: all are ground truth)")
    p.add_argument("--n-folds", type=int, default=5, help="cross-fitting folds K (default 5)")
    p.add_argument("--calibration", default="monotone", choices=["monotone", "two_stage", "auto"],
                   help="judge->oracle calibration mode (default monotone)")
    p.add_argument("--clip", type=float, default=100.0, help="raw-ips weight clip (default 100)")
    p.add_argument("--rho", type=float, default=1.0,
                   help="SIMCal-W variance cap: Var(W_cal) <= rho Var(W_raw) (default 1)")
    p.add_argument("--transport-margin", type=float, default=0.05, help="transport audit margin (default 0.05)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--refuse-unreliable", action="store_true",
                   help="write null instead of the estimate of a CRITICAL policy")
    p.add_argument("--allow-missing-fresh-draws", action="store_true",
                   help="drop (and count) logged prompts that lack fresh draws instead of failing")
    p.add_argument("--comparisons", default="base", choices=["base", "all"],
                   help="paired comparisons to write: each target against the base and the best against "
                        "each other candidate (base, the default), or every pair (all; refused above "
                        "20,000 pairs, i.e. 199 targets)")
    p.add_argument("--plots", action="store_true", help="also write OUT/plots/*.png and the HTML dashboard")
    p.add_argument("--output-dir", required=True, help="output folder")
    add_output_flags(p, "the analysis summary")
    p.set_defaults(func=run)


def format_summary(payload: dict, dashboard: str | Path | None = None) -> str:
    """The decision-first terminal summary (:func:`cje.viz.text.format_summary`)."""
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.viz.text import format_summary as _format

    return _format(payload, dashboard=dashboard, dashboard_hint="add --plots to write it")


def run(args: argparse.Namespace) -> int:
    """Run the analysis through the public API and write its outputs; nothing is written on error.

    Exit code 0, or 3 when ``--refuse-unreliable`` withheld at least one estimate
    (the files are written either way; the withheld estimates are null).
    """
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.api import analyze
    from cje.results.files import check_output_dir

    check_output_dir(args.output_dir)  # a file / read-only folder fails before the analysis runs
    result = analyze(args.data, fresh_draws=args.fresh_draws_dir, estimator=args.estimator,
                     oracle_coverage=args.oracle_coverage, seed=args.seed, probe_coverage=args.probe_coverage,
                     n_folds=args.n_folds, calibration=args.calibration, clip=args.clip, rho=args.rho,
                     transport_margin=args.transport_margin, level=args.level,
                     refuse_unreliable=args.refuse_unreliable,
                     allow_missing_fresh_draws=args.allow_missing_fresh_draws, comparisons=args.comparisons)
    paths = result.write(args.output_dir, plots=args.plots)
    if args.json:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.viz.text import summary_record

        files = {k: str(paths[k]) if paths.get(k) else None for k in ("json", "csv", "plot_data", "dashboard")}
        print(json.dumps(summary_record(result.payload, files), allow_nan=False))
    elif not args.quiet:
        print(format_summary(result.payload, dashboard=paths.get("dashboard")))
        print(f"wrote {paths['json']} and {paths['csv']}")
    if result.refused:
        print(f"cje analyze: estimates withheld (--refuse-unreliable): {', '.join(result.withheld)}; exit code 3",
              file=sys.stderr)
        return 3
    return 0
