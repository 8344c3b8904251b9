"""The profiles parse: a dry run through each builds the full DAG (executor plugins
installed; kubernetes and a real SLURM cluster are not needed for a dry run)."""

from __future__ import annotations

import pytest

from .wfutil import load_yaml, planned_jobs, run_snakemake


@pytest.mark.parametrize("profile", ["local", "slurm", "slurm-ci", "kubernetes"])
def test_profile_parses_in_a_dry_run(workflow_dir, tmp_path, profile):
    args = ["--profile", f"profiles/{profile}"]
    if profile == "kubernetes":
        # the shared volume of the profile does not exist here: point the fs storage
        # at an empty temp folder (the dry run checks which outputs exist there)
        args += ["--default-storage-prefix", str(tmp_path / "storage")]
    jobs = planned_jobs(workflow_dir, *args)
    cfg = load_yaml(workflow_dir / "config" / "config.yaml")
    assert jobs["generate"] == len(cfg["policies"]) * cfg["execution"]["shards"]
    assert jobs["all"] == 1


def test_kubernetes_profile_selects_its_executor(workflow_dir, tmp_path):
    """The kubernetes executor plugin is loaded (an unknown key or plugin would fail)."""
    proc = run_snakemake(workflow_dir, "-n", "--profile", "profiles/kubernetes",
                         "--default-storage-prefix", str(tmp_path / "storage"))
    out = proc.stdout + proc.stderr
    assert "Using profile profiles/kubernetes" in out
    assert "(in storage)" in out or "storage" in out
