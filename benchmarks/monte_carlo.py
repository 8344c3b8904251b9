"""``python -m benchmarks.monte_carlo``: the Monte-Carlo table of docs/statistics.md.

Runs every grid of :data:`cje.sim.montecarlo.STANDARD_GRIDS` (the same seeds the tests in
tests/stats check: 200 replicates x oracle coverage 0.05/0.10/0.25/1.0 x every registered
estimator x the scenario's targets, n = 1,000), prints one table per grid, writes
``benchmarks/results/monte_carlo.json`` and rewrites the block between
``<!-- montecarlo:begin -->`` and ``<!-- montecarlo:end -->`` in docs/statistics.md.
About 10 minutes on 2 cores (``--grids mild,strong`` for a subset, ``--replicates`` to
change the count; the committed table is always the 200-replicate one).

Columns, per (targets, estimator, oracle coverage), pooled over the scenario's healthy
target policies and, separately, over its broken ones (``cje.sim.montecarlo.BROKEN_TARGETS``:
a judge failure): CI coverage; coverage without the OUA term; mean bias and the largest
|bias| / Monte-Carlo SE over the policies; RMSE; mean reported SE / Monte-Carlo sd (worst
policy); share CRITICAL (``reliable: false``); share GOOD; share GOOD whose CI misses;
share of misses not CRITICAL (reliable and missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "statistics.md"
OUT = REPO / "benchmarks" / "results" / "monte_carlo.json"
BEGIN, END = "<!-- montecarlo:begin -->", "<!-- montecarlo:end -->"


def summarise_grid(frame, scenario: str):
    """One row per (targets, estimator, oracle coverage) with the columns of the module docstring."""
    import polars as pl

    from cje.sim.montecarlo import BROKEN_TARGETS

    broken = list(BROKEN_TARGETS.get(scenario, ()))
    frame = frame.with_columns(targets=pl.when(pl.col("policy").is_in(broken)).then(pl.lit("broken"))
                               .otherwise(pl.lit("healthy")))
    import numpy as np
    from scipy import special

    # the unclipped half-width t_df * SE (a CI clipped to [0, 1] is shorter on one side only)
    df = frame.get_column("df").to_numpy()
    q = np.where(np.isfinite(df), special.stdtrit(np.where(np.isfinite(df), df, 1.0), 0.975), special.ndtri(0.975))
    f = frame.with_columns(
        miss=~((pl.col("ci_lower") <= pl.col("truth")) & (pl.col("truth") <= pl.col("ci_upper"))),
        err=pl.col("estimate") - pl.col("truth"),
        half=pl.Series(q) * pl.col("se"))
    f = f.with_columns(miss_without_oua=pl.col("err").abs() > pl.col("half") * pl.col("se_without_oua") / pl.col("se"))
    per_policy = f.group_by(["targets", "estimator", "oracle_coverage", "policy"]).agg(
        z=pl.col("err").mean() / (pl.col("err").std() / pl.len().sqrt()),
        se_ratio=pl.col("se").mean() / pl.col("estimate").std())
    worst = per_policy.group_by(["targets", "estimator", "oracle_coverage"]).agg(
        max_abs_bias_z=pl.col("z").abs().max(),
        se_ratio_worst=pl.col("se_ratio").sort_by((pl.col("se_ratio") - 1).abs()).last())
    pooled = f.group_by(["targets", "estimator", "oracle_coverage"]).agg(
        n=pl.len(), ci_coverage=1 - pl.col("miss").mean(),
        ci_coverage_without_oua=1 - pl.col("miss_without_oua").mean(),
        bias=pl.col("err").mean(), rmse=(pl.col("err") ** 2).mean().sqrt(),
        flagged=(~pl.col("reliable")).mean(), good=(pl.col("status") == "GOOD").mean(),
        good_and_miss=((pl.col("status") == "GOOD") & pl.col("miss")).mean(),
        reliable_and_miss=(pl.col("reliable") & pl.col("miss")).mean())
    keys = ["targets", "estimator", "oracle_coverage"]
    return pooled.join(worst, on=keys).sort(["targets", "estimator", "oracle_coverage"], descending=[True, False, False])


def markdown(name: str, spec, table) -> str:
    from cje.sim.scenarios import SCENARIOS

    head = (f"#### {name}: {SCENARIOS[spec.scenario].description}"
            + (f"; probe labels on {spec.probe_coverage:.0%} of each target's fresh draws" if spec.probe_coverage
               else "; no probe labels") + f" ({spec.replicates} replicates, n = {spec.n}, seeds from {spec.seed0})\n\n")
    cols = ("| targets | estimator | oracle cov. | CI coverage | without OUA | bias | max abs z | RMSE | SE / MC sd | "
            "CRITICAL | GOOD | GOOD and miss | miss not CRITICAL |\n|" + "---|" * 13 + "\n")
    rows = []
    for r in table.iter_rows(named=True):
        rows.append(f"| {r['targets']} | {r['estimator']} | {r['oracle_coverage']:g} | {r['ci_coverage']:.3f} | "
                    f"{r['ci_coverage_without_oua']:.3f} | {r['bias']:+.4f} | {r['max_abs_bias_z']:.1f} | "
                    f"{r['rmse']:.4f} | {r['se_ratio_worst']:.2f} | {r['flagged']:.3f} | {r['good']:.3f} | "
                    f"{r['good_and_miss']:.3f} | {r['reliable_and_miss']:.3f} |")
    return head + cols + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    from cje.sim.montecarlo import STANDARD_GRIDS, run_grid

    parser = argparse.ArgumentParser(prog="python -m benchmarks.monte_carlo", description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default=",".join(STANDARD_GRIDS), help="comma-separated subset of the grids")
    parser.add_argument("--replicates", type=int, default=None, help="override the replicate count (no doc update)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: 2)")
    parser.add_argument("--load-frames", default=None, metavar="DIR",
                        help="read each grid's rows from DIR/{grid}.parquet (written by the tests/stats session "
                             "with CJE_MC_FRAMES=DIR) instead of computing them")
    args = parser.parse_args(argv)
    names = [g for g in args.grids.split(",") if g]
    unknown = set(names) - set(STANDARD_GRIDS)
    if unknown:
        parser.error(f"unknown grids {sorted(unknown)}; choose from {', '.join(STANDARD_GRIDS)}")
    sections, payload = [], {"when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "grids": {}}
    for name in names:
        spec = STANDARD_GRIDS[name]
        if args.replicates:
            spec = dataclasses.replace(spec, replicates=args.replicates)
        start = time.time()
        if args.load_frames:
            import polars as pl

            frame = pl.read_parquet(Path(args.load_frames) / f"{name}.parquet")
        else:
            frame = run_grid(spec, workers=args.workers)
        table = summarise_grid(frame, spec.scenario)
        seconds = time.time() - start
        text = markdown(name, spec, table)
        print(text, flush=True)
        print(f"({name}: {seconds:.0f} s)\n", flush=True)
        sections.append(text)
        payload["grids"][name] = {"spec": dataclasses.asdict(spec), "seconds": seconds, "rows": table.to_dicts()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    from cje.atomic import atomic_write_text

    atomic_write_text(OUT, json.dumps(payload, indent=1) + "\n")
    if args.replicates is None and names == list(STANDARD_GRIDS):
        doc = DOC.read_text()
        block = (f"{BEGIN}\nGenerated by `python -m benchmarks.monte_carlo` ({payload['when_utc']}); "
                 f"the grids and seeds are `cje.sim.montecarlo.STANDARD_GRIDS`, the ones tests/stats checks.\n\n"
                 + "\n".join(sections) + END)
        if BEGIN in doc:
            doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
        atomic_write_text(DOC, doc)
        print(f"wrote {OUT} and the table in {DOC}")
    else:
        print(f"wrote {OUT} (docs/statistics.md is only rewritten by a full 200-replicate run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
