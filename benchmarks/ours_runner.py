"""Run one analysis with our ``cje analyze`` CLI in a subprocess and measure it.

The command is the documented one (docs/contracts.md)::

    python -m cje analyze --data LOGGED.jsonl --fresh-draws-dir DIR --estimator NAME
        --oracle-coverage C --seed S --output-dir OUT

run with this interpreter (``sys.executable``) from the repository root through
``benchmarks/_ours_child.py`` (which calls ``cje.cli.main`` exactly as ``python -m
cje`` does and also reports how much of the time was start-up), so wall time
includes interpreter start, imports, loading the JSONL and writing
``OUT/estimates.json``, exactly like the reference runs. While the analysis CLI
does not exist yet the runner reports ``not_available`` instead of failing.
"""

from __future__ import annotations

import functools
import os
import shutil

from .common import BENCH_DIR, OUR_PYTHON, REPO, TMP_DIR, log, read_json, run_measured
from .datasets import BenchDataset


CHILD = BENCH_DIR / "_ours_child.py"


@functools.lru_cache(maxsize=1)
def availability() -> tuple[bool, str]:
    """Whether ``cje analyze`` exists in this checkout: (True, "") or (False, why not)."""
    m = run_measured([str(OUR_PYTHON), "-m", "cje", "analyze", "--help"], cwd=REPO, timeout=120)
    if m.returncode == 0:
        return True, ""
    tail = (m.stderr.strip().splitlines() or ["no output"])[-1]
    return False, f"`python -m cje analyze` unavailable ({tail[:160]})"


def run_ours(ds: BenchDataset, estimator: str, oracle_coverage: float = 1.0, seed: int = 0,
             timeout: float = 3600, keep_output: bool = False) -> dict:
    """One analysis of ``ds`` with our CLI, measured.

    Inputs: the dataset, estimator name, oracle coverage (1.0 = every label in the
    file; the CLI keeps round(c * n) labels), seed, timeout in seconds. Output: a
    dict with ``status`` (``ok`` / ``not_available`` / ``failed`` / ``timeout``),
    ``wall_seconds``, ``cpu_seconds``, ``peak_rss_mb``, ``startup_seconds`` and
    ``analysis_seconds`` (the split inside the child), ``target_policies``, ``estimates``,
    ``standard_errors``, ``reliable`` and ``reasons`` (per policy, from
    ``metadata.policies``), ``error`` on failure. The output directory is removed
    afterwards unless ``keep_output``.
    """
    ok, why = availability()
    if not ok:
        return {"status": "not_available", "error": why}
    out_dir = TMP_DIR / "ours" / f"{ds.name}-{estimator}-c{oracle_coverage:g}-s{seed}-{os.getpid()}"
    shutil.rmtree(out_dir, ignore_errors=True)
    cli_args = ["analyze", "--data", str(ds.logged),
                "--fresh-draws-dir", str(ds.fresh_draws_dir), "--estimator", estimator,
                "--oracle-coverage", f"{oracle_coverage:g}", "--seed", str(seed),
                "--output-dir", str(out_dir)]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    timing = out_dir.with_name(out_dir.name + ".timing.json")
    timing.unlink(missing_ok=True)
    env = {**os.environ, "CJE_BENCH_TIMING": str(timing),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    m = run_measured([str(OUR_PYTHON), str(CHILD), *cli_args], cwd=REPO, env=env, timeout=timeout)
    split = read_json(timing) or {}
    timing.unlink(missing_ok=True)
    record = {"wall_seconds": m.wall_seconds, "cpu_seconds": m.cpu_seconds,
              "peak_rss_mb": split.get("peak_rss_mb") or m.peak_rss_mb, "load_avg_1min_after": os.getloadavg()[0],
              "startup_seconds": split.get("startup_seconds"),
              "analysis_seconds": split.get("analysis_seconds"),
              "command": "python -m cje " + " ".join(cli_args)}
    payload = read_json(out_dir / "estimates.json") if m.returncode == 0 else None
    if not keep_output:
        shutil.rmtree(out_dir, ignore_errors=True)
    if payload is None:
        err = m.stderr.strip()
        if "invalid choice" in err or "unknown estimator" in err.lower():
            status = "not_available"
        else:
            status = "timeout" if m.returncode == -9 else "failed"
        log(f"ours {estimator} n={ds.n}: {status} (exit {m.returncode})")
        return {**record, "status": status, "returncode": m.returncode, "error": err[-1500:]}
    meta = payload["metadata"]
    pols = meta["target_policies"]
    per = meta.get("policies", {})
    record.update(
        status="ok", target_policies=pols, estimates=payload["estimates"],
        standard_errors=payload["standard_errors"],
        reliable=[per.get(p, {}).get("reliable") for p in pols],
        reasons=[per.get(p, {}).get("reasons", []) for p in pols],
        n_oracle=meta.get("n_oracle"), oracle_coverage_used=meta.get("oracle_coverage_used"))
    log(f"ours {estimator} n={ds.n}: {m.wall_seconds:.2f} s, {record['peak_rss_mb']:.0f} MiB")
    return record
