"""The summary aggregates exactly its declared inputs (issue 11.1).

The summary rule passes the configured grid's estimates.json files to
``cje summarize --inputs``; other folders under results/ (another estimator, a
stale ``coverage_0.50`` next to ``coverage_0.5``) are never read.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

from .wfutil import analysis_only_config, run_snakemake, write_config


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_summary_reads_only_the_configured_grid(workflow_dir):
    write_config(workflow_dir, "both.yaml", analysis_only_config(
        estimators=["calibrated-ips", "raw-ips"], oracle_coverages=[0.5]))
    run_snakemake(workflow_dir, "--configfile", "both.yaml", "--cores", "2")
    results = workflow_dir / "results"
    # a stale folder with a broken file next to the canonical one
    (results / "raw-ips" / "coverage_0.50").mkdir()
    (results / "raw-ips" / "coverage_0.50" / "estimates.json").write_text("{not json")
    write_config(workflow_dir, "raw.yaml", analysis_only_config(estimators=["raw-ips"],
                                                                oracle_coverages=[0.5]))
    run_snakemake(workflow_dir, "--configfile", "raw.yaml", "--cores", "2")
    rows = _rows(results / "summary.csv")
    assert {r["estimator"] for r in rows} == {"raw-ips"}  # calibrated-ips/ exists but is not asked for
    assert {r["source"] for r in rows} == {"raw-ips/coverage_0.5/estimates.json"}
    assert len(rows) == 3  # the 3 target policies of .test/data
    log = (workflow_dir / "logs" / "summary.log").read_text()
    assert "--inputs results/raw-ips/coverage_0.5/estimates.json --results-dir results" in log


def _summarize(cwd, *args):
    return subprocess.run([sys.executable, "-m", "cje", "summarize", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_summarize_cli_inputs(workflow_dir, tmp_path):
    write_config(workflow_dir, "ao.yaml", analysis_only_config(
        estimators=["calibrated-ips", "raw-ips"], oracle_coverages=[0.25, 0.5]))
    run_snakemake(workflow_dir, "--configfile", "ao.yaml", "--cores", "2")
    results = workflow_dir / "results"
    one = results / "raw-ips" / "coverage_0.25" / "estimates.json"
    two = results / "raw-ips" / "coverage_0.5" / "estimates.json"
    proc = _summarize(tmp_path, "--inputs", str(two), str(one), str(one), "--output", "s.csv")
    assert proc.returncode == 0, proc.stderr
    rows = _rows(tmp_path / "s.csv")
    assert len(rows) == 2 * 3  # two files (one given twice), three policies each
    # without --results-dir the sources are relative to the sweep folder (results/)
    assert {r["source"] for r in rows} == {"raw-ips/coverage_0.25/estimates.json",
                                           "raw-ips/coverage_0.5/estimates.json"}
    # --results-dir alone still reads every estimates.json below it
    shutil.rmtree(results / "calibrated-ips" / "coverage_0.25")
    proc = _summarize(tmp_path, "--results-dir", str(results), "--output", "all.csv")
    assert proc.returncode == 0, proc.stderr
    assert len(_rows(tmp_path / "all.csv")) == 3 * 3
    # errors: one line, exit 2, naming the file or the option
    proc = _summarize(tmp_path, "--inputs", str(results / "nope.json"), "--output", "x.csv")
    assert proc.returncode == 2 and "nope.json" in proc.stderr and "Traceback" not in proc.stderr
    proc = _summarize(tmp_path, "--output", "x.csv")
    assert proc.returncode == 2 and "--inputs" in proc.stderr and "Traceback" not in proc.stderr
