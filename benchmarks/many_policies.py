"""Many target policies: ``cje analyze`` on k targets x n logged rows (default 1,000 x 100).

``python -m benchmarks.many_policies [--targets K] [--rows N] [--comparisons base|all]``
writes a synthetic logged dataset (judge score, oracle label on every row, one log-prob
per target) under ``benchmarks/results/tmp/``, runs ``python -m cje analyze --estimator
calibrated-ips --quiet`` on it in a subprocess and prints wall time, the child's peak RSS,
the size of estimates.json and the number of stored comparisons. Results in
docs/benchmarks.md ("Many policies").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import TMP_DIR

REPO = Path(__file__).resolve().parents[1]


def write_dataset(path: Path, targets: int, rows: int, seed: int = 0) -> Path:
    """Logged rows with ``targets`` target log-probs each (every row oracle-labelled)."""
    rng = np.random.default_rng(seed)
    judge = rng.uniform(0.1, 0.9, rows)
    oracle = np.clip(judge + rng.normal(0, 0.1, rows), 0, 1)
    base = -10 - rng.uniform(0, 2, rows)
    target = -10 - rng.uniform(0, 2, (rows, targets))
    names = [f"pol{j:04d}" for j in range(targets)]
    with path.open("w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"prompt_id": f"p{i}", "prompt": f"q{i}", "response": f"a{i}",
                                 "base_policy_logprob": float(base[i]),
                                 "target_policy_logprobs": dict(zip(names, target[i].tolist())),
                                 "metadata": {"judge_score": float(judge[i]), "oracle_label": float(oracle[i])}})
                     + "\n")
    return path


def run(targets: int = 1000, rows: int = 100, comparisons: str = "base") -> dict:
    """Run one analysis; return {wall_seconds, peak_rss_mib, estimates_json_bytes, comparisons, exit_code}."""
    root = TMP_DIR / f"many_policies_{targets}x{rows}"
    root.mkdir(parents=True, exist_ok=True)
    data = root / "logged.jsonl"
    if not data.exists():
        write_dataset(data, targets, rows)
    out = root / f"out_{comparisons}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cje", "analyze", "--data", str(data), "--estimator",
                           "calibrated-ips", "--comparisons", comparisons, "--output-dir", str(out), "--quiet"],
                          env=env, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    record = {"targets": targets, "rows": rows, "comparisons_mode": comparisons, "exit_code": proc.returncode,
              "wall_seconds": round(wall, 1), "peak_rss_mib": round(peak), "stderr": proc.stderr.strip()}
    if proc.returncode == 0:
        est = out / "estimates.json"
        record["estimates_json_bytes"] = est.stat().st_size
        record["comparisons"] = len(json.loads(est.read_text())["metadata"]["comparisons"])
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--comparisons", default="base", choices=["base", "all"])
    args = parser.parse_args(argv)
    print(json.dumps(run(args.targets, args.rows, args.comparisons), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
