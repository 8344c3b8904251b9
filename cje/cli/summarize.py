"""``cje summarize``: the sweep summary (CSV, optional HTML) over the given estimates.json files
(``--inputs``, what the workflow passes) or every one below a folder (``--results-dir``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cje.atomic import atomic_write_text
from cje.cli.analyze import add_output_flags
from cje.errors import ConfigError

__all__ = ["register", "run_summarize"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``summarize`` subcommand."""
    p = sub.add_parser(
        "summarize", help="one table (CSV, HTML) of the given analyses (or every one under a results folder)",
        description="Collect exactly the estimates.json files given with --inputs (the workflow passes its "
                    "declared inputs), or every estimates.json below --results-dir, into one CSV row per "
                    "(estimator, oracle_coverage, seed, policy), reading estimator, coverage and seed from each "
                    "file's metadata, never from its path; optionally an HTML page with estimate-vs-coverage plots and, when ground truth is "
                    "known, bias, RMSE, CI coverage and pairwise ranking accuracy per estimator and coverage.")
    p.add_argument("--inputs", nargs="+", metavar="FILE",
                   help="the estimates.json files to summarise, and nothing else")
    p.add_argument("--results-dir", help="folder holding {estimator}/coverage_{c}/.../estimates.json: every one "
                                         "below it is read; with --inputs only the folder source names are "
                                         "relative to")
    p.add_argument("--output", required=True, help="summary CSV to write (e.g. results/summary.csv)")
    p.add_argument("--html", help="also write this self-contained HTML page (e.g. results/summary.html)")
    p.add_argument("--accuracy-output", help="also write the per estimator x coverage accuracy table as CSV")
    p.add_argument("--figure", help="also keep the estimate-vs-coverage PNG at this path (needs --html)")
    add_output_flags(p, "the counts, the accuracy table and the written files")
    p.set_defaults(func=run_summarize)


def run_summarize(args: argparse.Namespace) -> int:
    """Build the summary; every output is written atomically. Returns 0."""
    # imported when the command runs: `cje --help` and the other commands stay light
    from cje.viz.sweep import accuracy_table, load_summary

    if args.inputs is None and args.results_dir is None:
        raise ConfigError("give --inputs FILE... or --results-dir DIR", flag="--inputs")
    frame = load_summary(args.results_dir, paths=args.inputs)
    atomic_write_text(args.output, frame.write_csv())
    written = [args.output]
    accuracy = accuracy_table(frame)
    if args.accuracy_output:
        atomic_write_text(args.accuracy_output, accuracy.write_csv())
        written.append(args.accuracy_output)
    if args.html:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.viz.sweep_report import write_summary_html

        shown = args.results_dir or (f"{len(set(args.inputs))} files" if args.inputs else "")
        write_summary_html(frame, args.html, shown, figure_path=args.figure)
        written.append(args.html)
    if args.json:
        # imported when the command runs: `cje --help` and the other commands stay light
        from cje.results.model import to_jsonable

        print(json.dumps(to_jsonable({
            "schema": "cje.summarize/1", "analyses": frame["source"].n_unique(), "rows": frame.height,
            "estimators": sorted(frame["estimator"].unique().to_list()),
            "oracle_coverages": sorted(frame["oracle_coverage"].unique().to_list()),
            "seeds": sorted(frame["seed"].unique().to_list()),
            "accuracy": accuracy.to_dicts(), "files": [str(Path(w)) for w in written]}), allow_nan=False))
        return 0
    if args.quiet:
        return 0
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
