"""The analysis-only workflow on a real SLURM cluster (started by .ci/run).

Runs the analysis of the shipped simulated dataset (.test/data) through
``--profile profiles/slurm-ci`` (snakemake-executor-plugin-slurm, sbatch per job;
the small analysis jobs grouped, group "analyses") to completion. Fails, not
skips, under ``CI=true`` when no cluster answers.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.system_packages import require_commands, unavailable

from .wfutil import analysis_only_config, planned_jobs, run_snakemake, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm_cluster():
    """A usable SLURM node; skip with what to install or start, fail under CI=true."""
    require_commands("sbatch", "sinfo", package="slurm-wlm munge", why="the SLURM workflow test")
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states):
        unavailable(f"no usable SLURM node (sinfo: {proc.stdout.strip()} {proc.stderr.strip()})",
                    "start one with ../shared/ci/slurm/start-slurm.sh", ".ci/run does")


def test_analysis_only_workflow_runs_on_slurm(slurm_cluster, workflow_dir):
    cfg = analysis_only_config(estimators=["calibrated-ips", "raw-ips"], oracle_coverages=[0.5])
    write_config(workflow_dir, "ao.yaml", cfg)
    proc = run_snakemake(workflow_dir, "--profile", "profiles/slurm-ci", "--configfile", "ao.yaml",
                         timeout=600)
    log = proc.stdout + proc.stderr
    # both analyses went through sbatch as ONE group job (profile: groups, group-components);
    # the summary ran locally (localrule)
    assert log.count("has been submitted with SLURM jobid") == 1, log
    assert log.count("Group job analyses") == 1, log
    for estimator in ("calibrated-ips", "raw-ips"):
        result = json.loads((workflow_dir / "results" / estimator / "coverage_0.5" /
                             "estimates.json").read_text())
        assert result["metadata"]["estimator"] == estimator
        assert result["metadata"]["oracle_coverage"] == 0.5
        assert len(result["estimates"]) == len(result["metadata"]["target_policies"]) == 3  # .test/data
    assert (workflow_dir / "results" / "summary.csv").read_text().count("\n") >= 2 * 3
    # complete: nothing left to do, also when asked through the same profile
    assert planned_jobs(workflow_dir, "--profile", "profiles/slurm-ci",
                        "--configfile", "ao.yaml") == {}
