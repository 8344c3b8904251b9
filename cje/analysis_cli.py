"""``cje analyze``: estimates, CIs and diagnostics for every target policy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cje.context import AnalysisOptions

__all__ = ["register", "run", "format_summary"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` subcommand."""
    p = sub.add_parser("analyze", help="estimate each target policy's value from a logged dataset",
                       description="Estimate each target policy's oracle-scale value with honest CIs. "
                                   "Writes OUT/estimates.json, OUT/estimates.csv and OUT/plot_data.npz.")
    p.add_argument("--data", required=True, help="logged dataset JSONL (base-policy rows)")
    p.add_argument("--fresh-draws-dir", help="folder of {policy}_responses.jsonl (needed by naive, direct, DR)")
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
    p.add_argument("--plots", action="store_true", help="also write OUT/plots/*.png and the HTML dashboard")
    p.add_argument("--output-dir", required=True, help="output folder")
    p.set_defaults(func=run)


def format_summary(payload: dict) -> str:
    """A terminal table of estimates, CIs, status and ground truth (when known)."""
    meta = payload["metadata"]
    truth = meta.get("ground_truth", {})
    lines = [f"{meta['estimator']}  n={meta['n_samples']}  oracle labels={meta['n_oracle']} "
             f"(coverage {meta['oracle_coverage']})  seed={meta['seed']}",
             f"{'policy':<28}{'estimate':>9}{'95% CI':>20}{'status':>10}{'truth':>8}{'in CI':>7}"]
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        est = "refused" if r["estimate"] is None else f"{r['estimate']:.3f}"
        ci = "" if r["ci_lower"] is None else f"[{r['ci_lower']:.3f}, {r['ci_upper']:.3f}]"
        t = truth.get(name)
        lines.append(f"{name:<28}{est:>9}{ci:>20}{r['status']:>10}"
                     f"{'' if t is None else format(t['truth'], '.3f'):>8}"
                     f"{'' if t is None or t['in_ci'] is None else ('yes' if t['in_ci'] else 'NO'):>7}")
        for reason in r["reasons"]:
            lines.append(f"    - {reason}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the analysis and write its outputs; nothing is written on error."""
    from cje.analysis import AnalysisConfig, run_analysis

    options = AnalysisOptions(n_folds=args.n_folds, seed=args.seed, oracle_coverage=args.oracle_coverage,
                              calibration_mode=args.calibration, clip=args.clip, rho=args.rho,
                              probe_coverage=args.probe_coverage, transport_margin=args.transport_margin,
                              level=args.level, allow_missing_fresh_draws=args.allow_missing_fresh_draws)
    config = AnalysisConfig(data=args.data, estimator=args.estimator, fresh_draws_dir=args.fresh_draws_dir,
                            options=options, refuse_unreliable=args.refuse_unreliable)
    result = run_analysis(config)
    paths = result.write(args.output_dir)
    if args.plots:
        try:
            from cje.viz import render_analysis_plots
        except ImportError as exc:  # viz is optional at import time only while it is being built
            print(f"cje analyze: plots unavailable ({exc})", file=sys.stderr)
        else:
            render_analysis_plots(result.to_dict(), result.plot_data, Path(args.output_dir) / "plots")
    print(format_summary(result.to_dict()))
    print(f"wrote {paths['json']} and {paths['csv']}")
    return 0
