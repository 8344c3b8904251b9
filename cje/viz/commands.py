"""``cje summarize``: the sweep summary (CSV, optional HTML) over every estimates.json in a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_summarize"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``summarize`` subcommand."""
    p = sub.add_parser(
        "summarize", help="one table (CSV, HTML) of every analysis under a results folder",
        description="Collect every estimates.json below --results-dir (estimator, oracle coverage and seed are "
                    "read from each file's metadata) into one CSV row per (estimator, oracle_coverage, seed, "
                    "policy); optionally an HTML page with estimate-vs-coverage plots and, when ground truth is "
                    "known, bias, RMSE, CI coverage and pairwise ranking accuracy per estimator and coverage.")
    p.add_argument("--results-dir", required=True, help="folder holding {estimator}/coverage_{c}/.../estimates.json")
    p.add_argument("--output", required=True, help="summary CSV to write (e.g. results/summary.csv)")
    p.add_argument("--html", help="also write this self-contained HTML page (e.g. results/summary.html)")
    p.add_argument("--accuracy-output", help="also write the per estimator x coverage accuracy table as CSV")
    p.add_argument("--figure", help="also keep the estimate-vs-coverage PNG at this path (needs --html)")
    p.set_defaults(func=run_summarize)


def run_summarize(args: argparse.Namespace) -> int:
    """Build the summary; every output is written atomically. Returns 0."""
    from cje.io import atomic_write_text
    from cje.viz.summary import accuracy_table, load_summary

    frame = load_summary(args.results_dir)
    atomic_write_text(args.output, frame.write_csv())
    written = [args.output]
    accuracy = accuracy_table(frame)
    if args.accuracy_output:
        atomic_write_text(args.accuracy_output, accuracy.write_csv())
        written.append(args.accuracy_output)
    if args.html:
        from cje.viz.summary_report import write_summary_html

        write_summary_html(frame, args.html, args.results_dir, figure_path=args.figure)
        written.append(args.html)
    print(f"{frame['source'].n_unique()} analyses, {frame.height} rows "
          f"({frame['estimator'].n_unique()} estimators x {frame['oracle_coverage'].n_unique()} coverages x "
          f"{frame['seed'].n_unique()} seeds)")
    if accuracy.height:
        with_cols = accuracy.select("estimator", "oracle_coverage", "n_seeds", "bias", "rmse", "ci_coverage",
                                    "ranking_accuracy")
        import polars as pl

        with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, float_precision=4):
            print(with_cols)
    print("wrote " + ", ".join(str(Path(w)) for w in written))
    return 0
