"""``make bench`` = ``python -m benchmarks.run``: run the benchmark parts, print, save JSON.

Parts (``--only`` takes a comma-separated subset):

- ``compare``: our ``cje analyze`` vs ``cje-eval==0.3.0`` at n=1,000/10,000/100,000,
  and ours on a Parquet copy of the n=100,000 IPS inputs (reference cells reused from
  ``benchmarks/results/reference_*.json`` unless ``--rerun-reference``, which takes an
  optional comma-separated list of estimators to measure again);
- ``scale``: our estimators on synthetic data at n=10^4, 10^5, 10^6;
- ``api``: ``benchmarks/api_throughput.run(out_dir)`` (the LLM-client part) when present;
- ``workflow``: ``snakemake -n`` on a cold and a complete 10k-prompt analysis sweep;
- ``fullscale``: the 10,000-prompt Arena experiment through Snakemake against the
  simulated provider, a SIGKILL at ~50 % + rerun, +1,000 prompts
  (``benchmarks/fullscale.py``; ~30 min).

``--quick``: compare at n=1,000 only, scale at n=10^4 only, workflow on the
1,000-row arena sample, fullscale at 2,000 prompts; results go to ``benchmarks/results/quick/`` so the
committed full results are not overwritten. Output: the tables on stdout,
``benchmarks/results/{part}.json`` per part and ``benchmarks/results/targets.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import sys
import time
import traceback

from . import compare, datasets, fullscale, report, scale, workflow_overhead
from .common import RESULTS_DIR, TMP_DIR, log, read_json, write_json

PARTS = ("compare", "scale", "api", "workflow", "fullscale")


def _environment() -> dict:
    return {"when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu_count": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "python": platform.python_version(), "platform": platform.platform()}


def run_api(out_dir) -> dict:
    """Call ``benchmarks.api_throughput.run(out_dir)`` when that module exists."""
    try:
        mod = importlib.import_module("benchmarks.api_throughput")
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks.api_throughput":
            raise
        return {"status": "not_available",
                "error": "benchmarks/api_throughput.py (LLM-client part) not in this checkout"}
    with contextlib.redirect_stdout(sys.stderr):  # its own table would interleave with ours
        result = mod.run(out_dir)
    return {"status": "ok", **result} if isinstance(result, dict) else {
        "status": "failed", "error": f"api_throughput.run returned {type(result).__name__}"}


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the selected parts, print the tables; exit 0 unless a part crashed."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n=1,000 only (a few minutes)")
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    ap.add_argument("--rerun-reference", nargs="?", const="all", default=None, metavar="ESTIMATORS",
                    help="measure the reference again instead of reusing saved cells: every cell, or only "
                         "those of the comma-separated estimators given (e.g. calibrated-ips,raw-ips)")
    args = ap.parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in only if p not in PARTS]
    if bad:
        ap.error(f"--only: unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    out_dir = RESULTS_DIR / "quick" if args.quick else RESULTS_DIR
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    env = _environment()
    parts, crashed = {}, []
    for part in only:
        log(f"part {part}: start")
        t0 = time.perf_counter()
        try:
            if part == "compare":
                sizes = (1_000,) if args.quick else compare.SIZES
                rerun = (args.rerun_reference == "all" if args.rerun_reference in (None, "all") else
                         tuple(e.strip() for e in args.rerun_reference.split(",") if e.strip()))
                res = compare.run(sizes=sizes, rerun_reference=rerun)
            elif part == "scale":
                sizes = (10_000,) if args.quick else scale.SCALE_SIZES
                res = scale.run(sizes=sizes)
            elif part == "api":
                res = run_api(TMP_DIR / "api_throughput")
            elif part == "fullscale":
                size = fullscale.SIZES["quick" if args.quick else "full"]
                res = fullscale.run(size, out_dir=out_dir)
            else:
                ds = datasets.arena_sample() if args.quick else datasets.arena_resampled(10_000)
                res = workflow_overhead.run(ds)
        except Exception as exc:  # keep the other parts' results; report the crash
            traceback.print_exc()
            crashed.append(part)
            res = {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"}
        res["part_seconds"] = time.perf_counter() - t0
        res["environment"] = env
        parts[part] = res
        write_json(out_dir / f"{part}.json", res)
        log(f"part {part}: done in {res['part_seconds']:.0f} s -> {out_dir / (part + '.json')}")
    earlier = {}
    for part in PARTS:  # targets cover every part: the latest saved result of parts not run now
        if part not in parts:
            saved = read_json(out_dir / f"{part}.json")
            if saved:
                earlier[part] = saved
    rows = report.targets({**earlier, **parts})
    rows += fullscale.targets({**earlier, **parts}.get("fullscale"))
    for r in rows:
        for part, res in earlier.items():
            if r.get("part") == part:
                when = res.get("environment", {}).get("when_utc", "?")
                r["note"] = f"(from the run of {when}) " + r["note"]
    write_json(out_dir / "targets.json", {"environment": env, "parts_run": only,
                                          "quick": args.quick, "targets": rows})
    print(report.render(parts, rows))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
