"""Frozen outputs: what the estimators computed before a change meant to be arithmetic-neutral.

A speed-up that shares folds, fits or checks between estimators must not move a single bit of
any output. This module computes two things and can write them as the reference:

* :func:`montecarlo_rows`: replicate 0 of every Monte-Carlo grid
  (:data:`cje.sim.montecarlo.STANDARD_GRIDS`), every coverage x estimator x policy, with and
  without probes (the grids cover both);
* :func:`sample_payloads`: the estimates.json payload of every registered estimator on the
  shipped sample (``.test/data``) at oracle coverage 0.5, with and without probes (without the
  run's clock and version).

``tests/estimators/test_frozen_outputs.py`` compares today's code with the files. After a
change that is MEANT to move the numbers, regenerate them (and say why in the commit)::

    PYTHONPATH=. python -m tests.estimators.frozen_outputs --write
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import polars as pl

from cje.analysis.run import analyze_loaded
from cje.data.loaders import load_fresh_draws_dir, load_logged_data
from cje.estimators import estimator_names
from cje.estimators.context import AnalysisOptions
from cje.sim.montecarlo import STANDARD_GRIDS, replicate_rows

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROWS_FILE = HERE / "data" / "frozen_montecarlo_rows.parquet"
PAYLOADS_FILE = HERE / "data" / "frozen_sample_payloads.json.gz"
SAMPLE = REPO / ".test" / "data"
REPLICATE = 0
# run-specific fields, not outputs of the arithmetic
VOLATILE = ("created_at", "cje_version", "inputs")


def montecarlo_rows(grid: str) -> pl.DataFrame:
    """The rows of replicate 0 of one standard grid, tagged with the grid's name."""
    return pl.DataFrame(replicate_rows(STANDARD_GRIDS[grid], REPLICATE)).with_columns(grid=pl.lit(grid))


def sample_payloads() -> dict[str, dict]:
    """{'estimator|probe_coverage': payload} on the shipped sample at oracle coverage 0.5."""
    data = load_logged_data(SAMPLE / "logged_data.jsonl")
    fresh = load_fresh_draws_dir(SAMPLE / "fresh_draws", data.target_policies)
    out = {}
    for probe in (0.0, 0.5):
        for name in estimator_names():
            options = AnalysisOptions(oracle_coverage=0.5, probe_coverage=probe, seed=3)
            payload = analyze_loaded(data, fresh, name, options).to_dict()
            for key in VOLATILE:
                payload["metadata"].pop(key, None)
            # through JSON, as estimates.json holds it (floats round-trip exactly)
            out[f"{name}|{probe}"] = json.loads(json.dumps(payload))
    return out


def main() -> None:
    """``--write``: regenerate both reference files from the current code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="overwrite the reference files")
    if not parser.parse_args().write:
        parser.error("pass --write to regenerate the reference files")
    ROWS_FILE.parent.mkdir(parents=True, exist_ok=True)
    pl.concat([montecarlo_rows(g) for g in STANDARD_GRIDS]).write_parquet(ROWS_FILE)
    with gzip.open(PAYLOADS_FILE, "wt") as fh:
        json.dump(sample_payloads(), fh, sort_keys=True)
    print(f"wrote {ROWS_FILE.relative_to(REPO)} and {PAYLOADS_FILE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
