"""Config errors fail when the DAG is built, naming the config key, before any job runs.

Strict schema: an unknown key at any depth is named (with the closest known key);
``--config`` values are typed by the schema; every requested (oracle coverage, seed)
must leave >= 10 calibration labels; target paths spell coverages one way only.
"""

from __future__ import annotations

import pytest

from cje.stats.calibration import MIN_ORACLE_LABELS

from .wfutil import (REPO, analysis_only_config, load_yaml, planned_jobs, run_snakemake,
                     write_config)


def _default(workflow_dir):
    return load_yaml(workflow_dir / "config" / "config.yaml")


def _set(cfg, dotted, value):
    *parents, last = dotted.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    node[last] = value


def _remove(cfg, dotted):
    *parents, last = dotted.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    del node[last]


def _rename(cfg, dotted, new):
    *parents, last = dotted.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    node[new] = node.pop(last)


CASES = [
    ("unknown estimator", lambda c: _set(c, "analysis.estimators", ["calibrated-ips", "magic-ips"]),
     ["analysis.estimators[1]", "'magic-ips' is not one of"]),
    ("coverage above 1", lambda c: _set(c, "analysis.oracle_coverages", [0.5, 1.5]),
     ["analysis.oracle_coverages[1]", "1.5"]),
    ("coverage zero", lambda c: _set(c, "analysis.oracle_coverages", [0.0]),
     ["analysis.oracle_coverages[0]", "0.0"]),
    ("policy without model", lambda c: _remove(c, "policies.unhelpful.model"),
     ["policies.unhelpful", "'model' is a required property"]),
    ("policy with unknown provider", lambda c: _set(c, "policies.unhelpful.provider", "nowhere"),
     ["policies.unhelpful.provider", "unknown provider 'nowhere'"]),
    ("base policy not a policy", lambda c: _set(c, "base_policy", "logger"),
     ["base_policy", "'logger' is not an entry of policies"]),
    ("typo in a section name", lambda c: c.update(analysys={"seeds": [1]}),
     ["config key 'analysys': unknown key (did you mean 'analysis'?"]),
    # the nested typos: each is named with its full key and the intended one
    ("typo in a policy key", lambda c: _rename(c, "policies.cool.temperature", "temprature"),
     ["config key 'policies.cool.temprature': unknown key (did you mean 'temperature'?"]),
    ("typo in an oracle key", lambda c: _rename(c, "oracle.coverage", "coverge"),
     ["config key 'oracle.coverge': unknown key (did you mean 'coverage'?"]),
    ("typo in a judge key", lambda c: _rename(c, "judge.rubric_file", "rubric_flie"),
     ["config key 'judge.rubric_flie': unknown key (did you mean 'rubric_file'?"]),
    ("typo in a provider key", lambda c: _rename(c, "providers.local.n_threads", "n_thread"),
     ["config key 'providers.local.n_thread': unknown key (did you mean 'n_threads'?"]),
    ("judge-only key on the judge", lambda c: _set(c, "judge.coverage", 0.5),
     ["config key 'judge.coverage': unknown key"]),
    ("removed key", lambda c: _set(c, "execution.batch_size", 10),
     ["config key 'execution.batch_size': no longer used", "request_cache_dir"]),
    ("shards not a number", lambda c: _set(c, "execution.shards", "four"),
     ["execution.shards", "'four' is not of type 'integer'"]),
    ("missing rubric file", lambda c: _set(c, "judge.rubric_file", "config/rubrics/nope.txt"),
     ["judge.rubric_file", "file not found"]),
    ("half of analysis-only mode", lambda c: _set(c, "analysis.dataset", "data/x.jsonl"),
     ["analysis.fresh_draws_dir", "analysis-only mode needs both"]),
    ("probes without labelled fresh draws", lambda c: _set(c, "oracle.fresh_draw_coverage", 0.0),
     ["analysis.probe_coverage", "oracle.fresh_draw_coverage is 0"]),
    # 40 prompts x 0.05 = 2 labels (the README sweep that used to fail after 10 minutes)
    ("too few calibration labels", lambda c: _set(c, "analysis.oracle_coverages", [0.5, 0.05]),
     ["analysis.oracle_coverages[1]", "leaves 2 calibration labels", "round(0.05 x 40 prompts)",
      ">= 0.24 for 40 prompts"]),
    ("comparisons not a mode", lambda c: _set(c, "analysis.comparisons", "every"),
     ["analysis.comparisons", "'every' is not one of"]),
    # 200 targets: every pair would be 20,100 comparisons per analysis, above the cap
    ("every pair of too many policies", lambda c: (
        c["policies"].update({f"t{i:03d}": dict(c["policies"]["cool"]) for i in range(197)}),
        _set(c, "analysis.comparisons", "all")),
     ["analysis.comparisons", "200 target policies is 20,100 pairs", "20,000"]),
    # coverage 1 of the logged rows, but the oracle labels only 20% of them: 8 labels
    ("oracle labels too few rows", lambda c: _set(c, "oracle.coverage", 0.2),
     ["analysis.oracle_coverages[0]", "leaves 8 calibration labels", "oracle.coverage 0.2"]),
]


@pytest.mark.parametrize("name,edit,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_config_fails_at_dag_build_naming_the_key(workflow_dir, name, edit, needles):
    cfg = _default(workflow_dir)
    edit(cfg)
    write_config(workflow_dir, "bad.yaml", cfg)
    proc = run_snakemake(workflow_dir, "--configfile", "bad.yaml", "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "invalid workflow config" in out, out
    assert "Traceback" not in out and 'File "' not in out, out  # one line per bad key
    for needle in needles:
        assert needle in out, (needle, out)
    # failed before any job: nothing was built, no API call logged
    assert sorted(p.name for p in (workflow_dir / "data").iterdir()) == ["default_prompts.jsonl"]
    assert not (workflow_dir / "logs").exists()
    assert not (workflow_dir / "results").exists()


def test_every_typo_of_one_config_is_reported_at_once(workflow_dir):
    cfg = _default(workflow_dir)
    _rename(cfg, "policies.cool.temperature", "temprature")
    _rename(cfg, "oracle.coverage", "coverge")
    write_config(workflow_dir, "bad.yaml", cfg)
    proc = run_snakemake(workflow_dir, "-n", "--configfile", "bad.yaml", check=False)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("invalid workflow config")]
    assert [l.split("'")[1] for l in lines] == ["oracle.coverge", "policies.cool.temprature"], proc.stderr


def test_command_line_values_take_the_schema_types(workflow_dir):
    """--config nests values as strings (YAML base loader); they are typed by the schema."""
    jobs = planned_jobs(workflow_dir, "--config",
                        "analysis={oracle_coverages: [0.25, 0.5], seeds: [0, 3], plots: false}")
    assert jobs["analyze"] == 3 * 2 and jobs["analyze_replicate"] == 3 * 2
    proc = run_snakemake(workflow_dir, "-n", "--config", "analysis={oracle_coverages: [0.05]}",
                         check=False)
    # not "'0.05' is not of type 'number'": the coverage is read as a number and checked
    assert proc.returncode == 2 and "leaves 2 calibration labels" in proc.stderr, proc.stderr
    proc = run_snakemake(workflow_dir, "-n", "--config", "analysis={plots: maybe}", check=False)
    assert proc.returncode == 2 and "config key 'analysis.plots': 'maybe' is not of type 'boolean'" \
        in proc.stderr, proc.stderr


def test_label_minimum_is_the_calibrations():
    text = (REPO / "rules" / "config.smk").read_text()
    assert f"MIN_CALIBRATION_LABELS = {MIN_ORACLE_LABELS}\n" in text


@pytest.mark.parametrize("target,needles", [
    ("results/magic-ips/coverage_0.1/estimates.json", ["unknown estimator 'magic-ips'"]),
    ("results/raw-ips/coverage_1.5/estimates.json", ["oracle coverage 1.5 in target path"]),
    # one spelling per coverage: 0.10, .1 and 1e-1 would be three jobs writing one result
    ("results/raw-ips/coverage_0.10/estimates.json", ["write 'coverage_0.1'"]),
    ("results/raw-ips/coverage_.1/estimates.json", ["write 'coverage_0.1'"]),
    ("results/raw-ips/coverage_1e-1/estimates.json", ["write 'coverage_0.1'"]),
    ("results/raw-ips/coverage_1.0/seed_2/estimates.json", ["write 'coverage_1'"]),
    # 200 logged rows x 0.04 = 8 labels, counted on the dataset itself
    ("results/raw-ips/coverage_0.04/estimates.json",
     ["config key 'analysis.oracle_coverages'", "leaves 8 calibration labels"]),
])
def test_bad_target_path_fails_at_dag_build(workflow_dir, target, needles):
    write_config(workflow_dir, "ao.yaml", analysis_only_config())
    proc = run_snakemake(workflow_dir, target, "-n", "--configfile", "ao.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    for needle in needles:
        assert needle in out, (needle, out)


def test_canonical_targets_build(workflow_dir):
    write_config(workflow_dir, "ao.yaml", analysis_only_config())
    assert planned_jobs(workflow_dir, "results/raw-ips/coverage_0.1/estimates.json",
                        "results/raw-ips/coverage_1/seed_2/estimates.json",
                        "results/raw-ips/coverage_0.05/estimates.json",
                        "--configfile", "ao.yaml") == {"analyze": 2, "analyze_replicate": 1}
    # seed_007 is not a replicate path (it would duplicate seed_7)
    proc = run_snakemake(workflow_dir, "results/raw-ips/coverage_0.1/seed_007/estimates.json",
                         "-n", "--configfile", "ao.yaml", check=False)
    assert proc.returncode != 0
