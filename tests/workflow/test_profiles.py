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


def test_slurm_profile_groups_analyses_and_limits_providers(workflow_dir):
    """profiles/slurm: the 60 small analyses of config/arena.yaml (5 estimators x 4
    coverages x 3 seeds) go out as 12 group jobs of 5; every LLM job claims one unit of
    its provider's resource (api_fireworks / api_openai), which the profile caps."""
    proc = run_snakemake(workflow_dir, "-n", "--profile", "profiles/slurm",
                         "--configfile", "config/arena.yaml")
    out = proc.stdout + proc.stderr
    assert out.count("Group job analyses") == 60 // 5, out[-3000:]
    llm_jobs = 5 * 8 * 4  # 5 policies x 8 shards x (generate, logprobs, judge, oracle)
    claims = out.count("api_fireworks=1, api_openai=0") + out.count("api_fireworks=0, api_openai=1")
    assert claims == llm_jobs
    profile = load_yaml(workflow_dir / "profiles" / "slurm" / "config.v8+.yaml")
    assert profile["resources"] == ["api_fireworks=16", "api_openai=16"]
