"""Run one analysis with the reference library ``cje-eval==0.3.0`` and measure it.

The reference lives in its own venv, ``benchmarks/.ref-venv`` (git-ignored),
created on first use with ``python -m venv`` + ``pip install cje-eval==0.3.0``.
Each analysis runs ``benchmarks/_reference_child.py`` in a subprocess of that
venv (``cje.analyze_dataset(logged_data_path, fresh_draws_dir, estimator)``);
wall time and peak RSS are measured around the whole child, interpreter start
and imports included, exactly as for our CLI (``ours_runner``).

Reference runs at n=10,000 take minutes each (its DR estimators are quadratic in
n), so every measured cell is saved to ``benchmarks/results/reference_{estimator}_n{n}.json``
and reused while its key (library version, estimator, n, input digest) matches,
unless ``rerun=True``.

The reference has no oracle-coverage or seed option: it calibrates on every
oracle label in the logged file and seeds its folds with 42 internally. With
``oracle_coverage < 1`` this runner writes a seeded masked copy of the logged
file first (``datasets.masked_copy``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import BENCH_DIR, RESULTS_DIR, TMP_DIR, log, read_json, run_measured, write_json
from .datasets import BenchDataset, masked_copy

REFERENCE_PACKAGE = "cje-eval"
REFERENCE_VERSION = "0.3.0"
REF_VENV = BENCH_DIR / ".ref-venv"
REF_PYTHON = REF_VENV / "bin" / "python"
CHILD = BENCH_DIR / "_reference_child.py"
#: Estimators the reference registers (cje/interface/factory.py of cje-eval 0.3.0).
REFERENCE_ESTIMATORS = ("direct", "calibrated-ips", "raw-ips", "dr-cpo", "mrdr", "tmle", "stacked-dr")
DR_ESTIMATORS = ("dr-cpo", "mrdr", "tmle", "stacked-dr")


def installed_version() -> str | None:
    """Version of ``cje-eval`` in the reference venv, or None when the venv or package is missing."""
    if not REF_PYTHON.exists():
        return None
    proc = subprocess.run(
        [str(REF_PYTHON), "-I", "-c",
         f"import importlib.metadata as m; print(m.version({REFERENCE_PACKAGE!r}))"],
        capture_output=True, text=True, cwd=str(TMP_DIR))
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_reference_venv() -> str:
    """Create ``benchmarks/.ref-venv`` with ``cje-eval==0.3.0`` when missing; return the version.

    Raises RuntimeError with pip's output when the installation fails (e.g. no
    access to PyPI).
    """
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    version = installed_version()
    if version == REFERENCE_VERSION:
        return version
    log(f"installing {REFERENCE_PACKAGE}=={REFERENCE_VERSION} into {REF_VENV} (once)")
    if not REF_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
    proc = subprocess.run(
        [str(REF_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"{REFERENCE_PACKAGE}=={REFERENCE_VERSION}"], capture_output=True, text=True)
    version = installed_version()
    if proc.returncode != 0 or version != REFERENCE_VERSION:
        raise RuntimeError(f"{REF_VENV}: could not install {REFERENCE_PACKAGE}=={REFERENCE_VERSION}:\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return version


def saved_path(estimator: str, n: int) -> Path:
    """Where the measured reference cell (estimator, n) is saved."""
    return RESULTS_DIR / f"reference_{estimator}_n{n}.json"


def cell_key(estimator: str, ds: BenchDataset, oracle_coverage: float) -> dict:
    """The identity of a reference measurement; a saved result is reused only if it matches."""
    return {"library": REFERENCE_PACKAGE, "version": REFERENCE_VERSION, "estimator": estimator,
            "n": ds.n, "input_digest": ds.input_digest, "oracle_coverage": oracle_coverage}


def run_reference(ds: BenchDataset, estimator: str, oracle_coverage: float = 1.0, seed: int = 0,
                  rerun: bool = False, timeout: float = 4 * 3600, nice: int = 10) -> dict:
    """One reference analysis of dataset ``ds`` with ``estimator``, saved or measured now.

    Inputs: the dataset, a reference estimator name, the oracle coverage (share of
    logged rows whose label is kept, 1.0 = every label in the file), the masking
    seed, ``rerun`` to ignore a saved result, a timeout in seconds and the nice
    increment for the child. Output: a dict with ``status`` (``ok`` / ``failed`` /
    ``timeout``), ``source`` (``measured`` or ``saved``), ``wall_seconds``,
    ``cpu_seconds``, ``peak_rss_mb``, the 1-minute load average before and after, ``target_policies``, ``estimates``, ``standard_errors``,
    ``measured_at`` and ``key``. Failures carry ``error`` (the child's stderr tail).
    """
    if estimator not in REFERENCE_ESTIMATORS:
        raise ValueError(f"{estimator!r} is not a {REFERENCE_PACKAGE} estimator "
                         f"({', '.join(REFERENCE_ESTIMATORS)})")
    key = cell_key(estimator, ds, oracle_coverage)
    path = saved_path(estimator, ds.n)
    saved = read_json(path)
    if saved and saved.get("key") == key and not rerun and saved.get("status") == "ok":
        return {**saved, "source": "saved"}
    ensure_reference_venv()
    data = ds.logged if oracle_coverage >= 1.0 else masked_copy(ds, oracle_coverage, seed)
    out_json = TMP_DIR / f"ref-{estimator}-n{ds.n}-{os.getpid()}.json"
    out_json.unlink(missing_ok=True)
    cmd = [str(REF_PYTHON), "-I", str(CHILD), "--data", str(data),
           "--fresh-draws-dir", str(ds.fresh_draws_dir), "--estimator", estimator,
           "--output", str(out_json)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    log(f"reference {REFERENCE_PACKAGE} {estimator} n={ds.n}: running (nice {nice})")
    load_before = os.getloadavg()[0]
    m = run_measured(cmd, cwd=TMP_DIR, env=env, timeout=timeout, nice=nice)
    record = {"key": key, "source": "measured",
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "cpu_count": os.cpu_count(), "load_avg_1min_before": load_before,
              "wall_seconds": m.wall_seconds, "cpu_seconds": m.cpu_seconds,
              "peak_rss_mb": m.peak_rss_mb, "load_avg_1min_after": os.getloadavg()[0]}
    child = read_json(out_json) if m.returncode == 0 else None
    if child is None:
        status = "timeout" if m.returncode == -9 else "failed"
        record.update(status=status, error=m.stderr[-2000:], returncode=m.returncode)
        log(f"reference {estimator} n={ds.n}: {status} after {m.wall_seconds:.1f} s")
        return record  # failures are not saved: a later run tries again
    out_json.unlink(missing_ok=True)
    record.update(status="ok", **{k: child[k] for k in (
        "target_policies", "estimates", "standard_errors", "ci_lower", "ci_upper",
        "n_samples_used", "analysis_seconds")})
    write_json(path, record)
    log(f"reference {estimator} n={ds.n}: {m.wall_seconds:.1f} s, {m.peak_rss_mb:.0f} MiB")
    return record


def quadratic_projection(points: list[tuple[int, float]], n_target: int) -> float | None:
    """Project wall time to ``n_target`` from measured (n, seconds) points.

    Fits t(n) = a n + b n^2 by least squares (through the origin; with two points
    it interpolates them exactly), the cost model of a per-row loop over
    per-prompt lookups. Output: the projected seconds, or None with fewer than two
    points or a non-positive fitted curve.
    """
    pts = [(float(n), float(t)) for n, t in points if t and t > 0]
    if len(pts) < 2:
        return None
    s11 = sum(n * n for n, _ in pts)
    s12 = sum(n ** 3 for n, _ in pts)
    s22 = sum(n ** 4 for n, _ in pts)
    r1 = sum(n * t for n, t in pts)
    r2 = sum(n * n * t for n, t in pts)
    det = s11 * s22 - s12 * s12
    if det == 0:
        return None
    a = (r1 * s22 - r2 * s12) / det
    b = (s11 * r2 - s12 * r1) / det
    proj = a * n_target + b * n_target ** 2
    return proj if proj > 0 and math.isfinite(proj) else None
