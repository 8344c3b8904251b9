"""Part 2: how our estimators scale with the number of logged rows.

Synthetic data (``datasets.synthetic``: 3 target policies, one fresh draw per
prompt and policy, 10 % oracle labels) at n = 10^4, 10^5, 10^6, analysed through
the CLI (``ours_runner.run_ours``), so the times include reading the JSONL files
and writing the results. Per estimator: wall time and peak RSS per n, and the
exponent k of time ~ n^k from a least-squares line through (log n, log t), where
t is the time after start-up (measured inside the child; the ~2 s of imports do
not grow with n and would pull a wall-time fit far below 1). The wall-time fit
and the local exponent between the two largest n are reported too.
"""

from __future__ import annotations

import math

from . import datasets
from .common import log
from .ours_runner import run_ours

SCALE_SIZES = (10_000, 100_000, 1_000_000)
SCALE_ESTIMATORS = ("direct", "calibrated-ips", "dr-cpo")


def loglog_exponent(points: list[tuple[int, float]]) -> float | None:
    """Slope of the least-squares line through (log n, log seconds).

    Input: (n, seconds) pairs with positive times. Output: the exponent k in
    t ~ c n^k, or None with fewer than two distinct n.
    """
    pts = [(math.log(n), math.log(t)) for n, t in points if t and t > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    return sxy / sxx


def run(sizes=SCALE_SIZES, estimators=SCALE_ESTIMATORS) -> dict:
    """Run part 2; return {"runs": [...], "exponents": {estimator: k}, "data": {...}}."""
    runs, data = [], {}
    for n in sorted(sizes):
        ds = datasets.synthetic(n)
        data[n] = {"name": ds.name, "n_oracle": ds.n_oracle, "input_digest": ds.input_digest,
                   "fresh_draws_per_policy": n, "target_policies": list(ds.target_policies)}
        for est in estimators:
            log(f"scale n={n} {est}")
            rec = run_ours(ds, est, oracle_coverage=1.0, seed=0)
            rec.pop("reasons", None)
            runs.append({"n": n, "estimator": est, **rec})
    exponents, exponents_wall, last_decade = {}, {}, {}
    for est in estimators:
        ok = sorted((r for r in runs if r["estimator"] == est and r["status"] == "ok"),
                    key=lambda r: r["n"])
        exponents[est] = loglog_exponent([(r["n"], r.get("analysis_seconds")) for r in ok])
        exponents_wall[est] = loglog_exponent([(r["n"], r["wall_seconds"]) for r in ok])
        last_decade[est] = (loglog_exponent([(r["n"], r.get("analysis_seconds")) for r in ok[-2:]])
                            if len(ok) >= 2 else None)
    return {"runs": runs, "exponents": exponents, "exponents_wall": exponents_wall,
            "exponents_last_interval": last_decade, "data": data,
            "path": "CLI subprocess on JSONL (loading and writing included)"}
