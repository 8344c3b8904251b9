"""DAG structure by dry-run job counts: cold targets, sweeps, what reruns after an edit.

"Complete" LLM branches are made cheap with ``--touch`` (every output exists and
its params/code metadata is recorded, as after a real run); the analysis-only
path is also run for real on the arena sample (test_rerun_analysis_only.py).
"""

from __future__ import annotations

import os
from collections import Counter

from .wfutil import (analysis_only_config, load_yaml, mark_complete,
                                   planned_jobs, run_snakemake, write_config)

LLM_STAGES = ("generate", "logprobs", "judge", "oracle")


def llm_chain(policies: int, shards: int) -> Counter:
    """Jobs of the full LLM chain: 4 sharded stages + their merges per policy."""
    jobs = Counter({"prompts": 1, "dataset": 1})
    for stage in LLM_STAGES:
        jobs[stage] = policies * shards
    for merge in ("merge_responses", "merge_logprobs", "merge_judge", "merge_oracle"):
        jobs[merge] = policies
    return jobs


def test_cold_target_builds_the_full_chain(workflow_dir):
    """A typed result path on a clean copy plans prompts -> ... -> one analysis, nothing more."""
    cfg = load_yaml(workflow_dir / "config" / "config.yaml")
    cfg["execution"]["shards"] = 3
    write_config(workflow_dir, "cold.yaml", cfg)
    jobs = planned_jobs(workflow_dir, "results/dr-cpo/coverage_0.5/estimates.json",
                        "--configfile", "cold.yaml")
    expected = llm_chain(len(cfg["policies"]), 3)
    expected["analyze"] = 1
    assert jobs == expected


def test_default_target_builds_the_configured_grid(workflow_dir):
    """rule all = estimators x coverages (first seed) + replicate seeds + the run's cost + summary."""
    cfg = load_yaml(workflow_dir / "config" / "config.yaml")
    cfg["analysis"].update(estimators=["calibrated-ips", "raw-ips"],
                           oracle_coverages=[0.25, 0.5, 1.0], seeds=[0, 1, 2])
    write_config(workflow_dir, "grid.yaml", cfg)
    jobs = planned_jobs(workflow_dir, "--configfile", "grid.yaml")
    expected = llm_chain(len(cfg["policies"]), cfg["execution"]["shards"])
    expected.update({"analyze": 2 * 3, "analyze_replicate": 2 * 3 * 2, "cost": 1, "summary": 1, "all": 1})
    assert jobs == expected


SWEEP_ESTIMATORS = ("calibrated-ips", "raw-ips", "dr-cpo", "mrdr", "tmle")


def test_sweep_estimators_by_coverages_is_one_call(workflow_dir):
    """The 5 x 4 coverage x estimator sweep is one snakemake call: 20 analysis jobs."""
    targets = [f"results/{e}/coverage_{c}/estimates.json"
               for e in SWEEP_ESTIMATORS for c in ("0.05", "0.1", "0.2", "0.5")]
    write_config(workflow_dir, "ao.yaml", analysis_only_config())
    jobs = planned_jobs(workflow_dir, *targets, "--configfile", "ao.yaml")
    assert jobs == Counter({"analyze": 20})
    # the README's sweep on the default config (40 prompts: coverages that leave >= 10
    # calibration labels) shares one data chain
    targets = [f"results/{e}/coverage_{c}/estimates.json"
               for e in SWEEP_ESTIMATORS for c in ("0.25", "0.5", "0.75", "1")]
    jobs = planned_jobs(workflow_dir, *targets)
    cfg = load_yaml(workflow_dir / "config" / "config.yaml")
    expected = llm_chain(len(cfg["policies"]), cfg["execution"]["shards"])
    expected["analyze"] = 20
    assert jobs == expected


def test_replicate_seed_path(workflow_dir):
    """results/{e}/coverage_{c}/seed_{s}/estimates.json is a replicate of one analysis."""
    write_config(workflow_dir, "ao.yaml", analysis_only_config())
    jobs = planned_jobs(workflow_dir, "results/raw-ips/coverage_0.2/seed_7/estimates.json",
                        "--configfile", "ao.yaml")
    assert jobs == Counter({"analyze_replicate": 1})


def _branch(policy_shards: int, grid: int) -> Counter:
    """Jobs that rerun when one policy's spec changes: its 4 stages, merges, dataset, grid."""
    jobs = Counter({stage: policy_shards for stage in LLM_STAGES})
    jobs.update({"merge_responses": 1, "merge_logprobs": 1, "merge_judge": 1,
                 "merge_oracle": 1, "dataset": 1, "cost": 1, "analyze": grid, "summary": 1, "all": 1})
    return jobs


def test_reruns_only_what_an_edit_makes_stale(workflow_dir):
    """After a complete run: 0 jobs; then each edit plans exactly its descendants."""
    cfg = load_yaml(workflow_dir / "config" / "config.yaml")
    policies = list(cfg["policies"])
    shards = cfg["execution"]["shards"]
    grid = len(cfg["analysis"]["estimators"]) * len(cfg["analysis"]["oracle_coverages"])
    assert len(cfg["analysis"]["seeds"]) == 1
    mark_complete(workflow_dir)
    assert planned_jobs(workflow_dir) == Counter()

    # a bare touch of package code changes nothing (its content hash is the same)
    (workflow_dir / "cje" / "estimators" / "ips.py").touch()
    (workflow_dir / "cje" / "llm" / "templates.py").touch()
    assert planned_jobs(workflow_dir) == Counter()

    # one target policy's system prompt: only that policy's branch + downstream
    target = [p for p in policies if p != cfg["base_policy"]][0]
    cfg["policies"][target]["system_prompt"] += " Be brief."
    write_config(workflow_dir, "edited.yaml", cfg)
    assert planned_jobs(workflow_dir, "--configfile", "edited.yaml") == _branch(shards, grid)

    # the base policy feeds every log-prob column: its branch reruns all logprobs shards
    base_cfg = load_yaml(workflow_dir / "config" / "config.yaml")
    base_cfg["policies"][base_cfg["base_policy"]]["temperature"] = 0.9
    write_config(workflow_dir, "base.yaml", base_cfg)
    jobs = planned_jobs(workflow_dir, "--configfile", "base.yaml")
    expected = _branch(shards, grid)
    expected["logprobs"] = len(policies) * shards
    expected["merge_logprobs"] = len(policies)
    assert jobs == expected

    # touching a rule script reruns that rule (all policies) and its descendants only
    script = workflow_dir / "scripts" / "judge.py"
    before = script.stat()
    script.touch()
    assert planned_jobs(workflow_dir) == Counter(
        {"judge": len(policies) * shards, "merge_judge": len(policies), "dataset": 1, "cost": 1,
         "analyze": grid, "summary": 1, "all": 1})
    os.utime(script, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert planned_jobs(workflow_dir) == Counter()

    # editing an estimator module reruns only the analysis rules (+ the summary)
    with open(workflow_dir / "cje" / "estimators" / "ips.py", "a") as fh:
        fh.write("\n# edited\n")
    assert planned_jobs(workflow_dir) == Counter({"analyze": grid, "summary": 1, "all": 1})

    # changing the oracle rubric reruns the oracle shards of every policy, not the judge
    rubric = workflow_dir / cfg["oracle"]["rubric_file"]
    rubric.write_text(rubric.read_text() + "\nBe strict.\n")
    assert planned_jobs(workflow_dir) == Counter(
        {"oracle": len(policies) * shards, "merge_oracle": len(policies), "dataset": 1, "cost": 1,
         "analyze": grid, "summary": 1, "all": 1})

    # editing the LLM client reruns every LLM stage (and so everything downstream)
    with open(workflow_dir / "cje" / "llm" / "templates.py", "a") as fh:
        fh.write("\n# edited\n")
    jobs = planned_jobs(workflow_dir)
    assert jobs["generate"] == len(policies) * shards and jobs["prompts"] == 1


def test_lint_is_clean(workflow_dir):
    """snakemake --lint exits 0 (log, conda, benchmark on every rule; no lint)."""
    proc = run_snakemake(workflow_dir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_settings_that_change_no_result_rerun_nothing(workflow_dir):
    """Cache folders are not rerun triggers; the fresh-draw labelling share reruns only
    the targets' oracle (the base policy's oracle labels the logged rows, whose share
    did not change), and the flush interval of earlier versions is gone."""
    cfg = load_yaml(workflow_dir / "config" / "config.yaml")
    policies = list(cfg["policies"])
    shards = cfg["execution"]["shards"]
    grid = len(cfg["analysis"]["estimators"]) * len(cfg["analysis"]["oracle_coverages"])
    mark_complete(workflow_dir)
    cfg["execution"].update(request_cache_dir="elsewhere/requests", rate_limit_dir="elsewhere/limits")
    write_config(workflow_dir, "moved.yaml", cfg)
    assert planned_jobs(workflow_dir, "--configfile", "moved.yaml") == Counter()

    cfg["oracle"]["fresh_draw_coverage"] = 0.5
    write_config(workflow_dir, "share.yaml", cfg)
    jobs = planned_jobs(workflow_dir, "--configfile", "share.yaml")
    targets = len(policies) - 1
    assert jobs == Counter({"oracle": targets * shards, "merge_oracle": targets, "dataset": 1, "cost": 1,
                            "analyze": grid, "summary": 1, "all": 1})
    proc = run_snakemake(workflow_dir, "-n", "--configfile", "share.yaml")
    assert f"data/shards/oracle/{cfg['base_policy']}/" not in proc.stdout


def test_switching_plots_on_reruns_the_analyses(workflow_dir):
    """analysis.plots false -> true: every analysis of the grid lacks its plots/ and reruns;
    true -> false: nothing to do (the plots stay)."""
    cfg = analysis_only_config(estimators=["calibrated-ips", "raw-ips"], oracle_coverages=[0.25, 0.5])
    write_config(workflow_dir, "off.yaml", cfg)
    mark_complete(workflow_dir, "--configfile", "off.yaml")
    assert planned_jobs(workflow_dir, "--configfile", "off.yaml") == Counter()
    cfg["analysis"]["plots"] = True
    write_config(workflow_dir, "on.yaml", cfg)
    assert planned_jobs(workflow_dir, "--configfile", "on.yaml") == Counter(
        {"analyze": 4, "summary": 1, "all": 1})
    mark_complete(workflow_dir, "--configfile", "on.yaml")
    assert planned_jobs(workflow_dir, "--configfile", "on.yaml") == Counter()
    assert planned_jobs(workflow_dir, "--configfile", "off.yaml") == Counter()
