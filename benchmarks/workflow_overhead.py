"""Part 4: Snakemake overhead on a 10k-prompt analysis sweep (``snakemake -n``).

The workflow runs in analysis-only mode (``analysis.dataset`` and
``analysis.fresh_draws_dir`` set, docs/contracts.md) on the resampled arena copy
with 10,000 prompts, over 5 estimators x 4 oracle coverages x 5 seeds = 100
analysis jobs (issue 11: under 5 s on 2 cores). The dry run includes every
DAG-time check (strict schema, the calibration-label count of every (coverage,
seed), which reads the dataset with the analysis's own loader). Each state gets its own working directory under
``benchmarks/results/tmp/workflow/`` (``--directory``; the Snakefile and rules
are the repository's), so nothing touches the checkout's ``results/``.

- cold: nothing exists; ``snakemake -n`` builds the DAG of every job.
- complete: every output exists and is up to date. Made without running the
  analyses: list the outputs (``snakemake --summary``), create the missing files
  empty, then ``snakemake --touch`` (sets their times in DAG order and records
  the metadata Snakemake compares). ``snakemake -n`` must then report
  "Nothing to be done".

Measured: wall time of ``snakemake -n`` (start-up + parsing + DAG = time to DAG;
median of REPEATS runs), the start-up alone (``snakemake --version``), the job
count. Where the SLURM client is installed, everything is measured a second time
with its import-time probe short-circuited (``_no_slurm_probe_env``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import yaml

from .common import OUR_PYTHON, REPO, TMP_DIR, log, run_measured
from .datasets import BenchDataset

SWEEP_ESTIMATORS = ["calibrated-ips", "raw-ips", "dr-cpo", "mrdr", "tmle"]
SWEEP_COVERAGES = [0.05, 0.1, 0.2, 0.5]
SWEEP_SEEDS = [0, 1, 2, 3, 4]
#: Issue 11's target for the dry run of this sweep (cold and complete) on 2 cores.
DRY_RUN_TARGET_SECONDS = 5.0
#: Each dry run is repeated; the median is reported (the machine is shared).
REPEATS = 3


def _snakemake() -> Path:
    return OUR_PYTHON.parent / "snakemake"


def _write_config(workdir: Path, ds: BenchDataset) -> Path:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    base.setdefault("analysis", {})
    base["analysis"].update(dataset=str(ds.logged), fresh_draws_dir=str(ds.fresh_draws_dir),
                            estimators=SWEEP_ESTIMATORS, oracle_coverages=SWEEP_COVERAGES,
                            seeds=SWEEP_SEEDS)
    path = workdir / "bench_config.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def _base_cmd(workdir: Path, cfg: Path) -> list[str]:
    return [str(_snakemake()), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(cfg), "--cores", "2"]


def _jobs(stdout: str) -> int | None:
    """Total job count from a dry run's 'Job stats' table ('total  N'), 0 when nothing to do."""
    if "Nothing to be done" in stdout:
        return 0
    m = re.search(r"^total\s+(\d+)", stdout, flags=re.M)
    return int(m.group(1)) if m else None


def _prepare(state: str, ds: BenchDataset) -> tuple[Path, Path]:
    workdir = TMP_DIR / "workflow" / state
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shutil.copytree(REPO / "config", workdir / "config")  # the Snakefile's default configfile
    return workdir, _write_config(workdir, ds)


def _make_complete(workdir: Path, cfg: Path) -> dict:
    """Create every output of the sweep without running it; returns what was done."""
    summ = run_measured(_base_cmd(workdir, cfg) + ["--summary"], cwd=workdir, timeout=600)
    if summ.returncode != 0:
        return {"status": "failed", "step": "--summary", "error": summ.stderr[-1500:]}
    outputs = [line.split("\t")[0] for line in summ.stdout.splitlines()[1:] if "\t" in line]
    for rel in outputs:
        p = workdir / rel
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith("/plots"):  # directory() outputs (analysis.plots)
                p.mkdir()
            else:
                p.touch()
    touch = run_measured(_base_cmd(workdir, cfg) + ["--touch"], cwd=workdir, timeout=600)
    if touch.returncode != 0:
        return {"status": "failed", "step": "--touch", "error": touch.stderr[-1500:]}
    return {"status": "ok", "n_outputs": len(outputs), "touch_seconds": touch.wall_seconds}


def _no_slurm_probe_env() -> dict | None:
    """Environment whose ``scontrol`` fails at once, or None when SLURM is not installed.

    snakemake-executor-plugin-slurm runs ``scontrol show config`` when it is imported
    (to word a help text); with the SLURM client installed but no slurmctld
    running, that call retries for ~9 s, on every snakemake command. A shim
    ``scontrol`` that exits 1 shows the workflow's own overhead without it.
    """
    if shutil.which("scontrol") is None:
        return None
    shim = TMP_DIR / "workflow" / "no-slurm-probe-bin"
    shim.mkdir(parents=True, exist_ok=True)
    script = shim / "scontrol"
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}


def _dry_runs(workdir: Path, cfg: Path, env: dict | None) -> dict:
    runs = [run_measured(_base_cmd(workdir, cfg) + ["-n"], cwd=workdir, env=env, timeout=600)
            for _ in range(REPEATS)]
    m = sorted(runs, key=lambda r: r.wall_seconds)[REPEATS // 2]  # the median run
    entry = {"status": "ok" if all(r.returncode == 0 for r in runs) else "failed",
             "wall_seconds": m.wall_seconds, "wall_seconds_all": [r.wall_seconds for r in runs],
             "cpu_seconds": m.cpu_seconds, "peak_rss_mb": max(r.peak_rss_mb for r in runs),
             "jobs": _jobs(m.stdout + m.stderr)}
    if m.returncode != 0:
        entry["error"] = m.stderr[-1500:]
    return entry


def _startup(env: dict | None) -> float:
    return sorted((run_measured([str(_snakemake()), "--version"], env=env, timeout=120)
                   for _ in range(REPEATS)), key=lambda r: r.wall_seconds)[REPEATS // 2].wall_seconds


def run(ds: BenchDataset) -> dict:
    """Run part 4 on dataset ``ds``; return {"status", "startup_seconds", "states": {...}}.

    Each state: ``status``, ``wall_seconds`` and ``peak_rss_mb`` of ``snakemake -n``,
    ``jobs`` (0 = nothing to be done), and for ``complete`` the preparation record.
    """
    if not (REPO / "Snakefile").exists() or not _snakemake().exists():
        return {"status": "not_available", "error": "no Snakefile or snakemake in this checkout"}
    version = run_measured([str(_snakemake()), "--version"], timeout=120)
    no_probe = _no_slurm_probe_env()
    result = {"status": "ok", "snakemake_version": version.stdout.strip(),
              "startup_seconds": _startup(None), "dataset": ds.name, "n": ds.n,
              "grid": {"estimators": SWEEP_ESTIMATORS, "oracle_coverages": SWEEP_COVERAGES,
                       "seeds": SWEEP_SEEDS},
              "target_seconds": DRY_RUN_TARGET_SECONDS,
              "states": {}}
    if no_probe is not None:
        result["startup_seconds_without_slurm_probe"] = _startup(no_probe)
    for state in ("cold", "complete"):
        log(f"workflow overhead: {state} sweep on {ds.name}")
        workdir, cfg = _prepare(state, ds)
        entry: dict = {}
        if state == "complete":
            entry["prepare"] = _make_complete(workdir, cfg)
            if entry["prepare"]["status"] != "ok":
                entry["status"] = "failed"
                result["states"][state] = entry
                continue
        entry.update(_dry_runs(workdir, cfg, None))
        if entry["status"] == "ok" and state == "complete" and entry["jobs"] != 0:
            entry["status"] = "failed"
            entry["error"] = f"dry run after --touch still plans {entry['jobs']} jobs"
        if no_probe is not None:
            entry["without_slurm_probe"] = _dry_runs(workdir, cfg, no_probe)
        result["states"][state] = entry
    if any(s.get("status") != "ok" for s in result["states"].values()):
        result["status"] = "failed"
    return result
