"""Config errors fail at DAG-build time, naming the config key, before any job runs."""

from __future__ import annotations

import os

import pytest

from .wfutil import load_yaml, run_snakemake, write_config


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
     ["<top level>", "'analysys' was unexpected"]),
    ("shards not a number", lambda c: _set(c, "execution.shards", "four"),
     ["execution.shards", "'four' is not of type 'integer'"]),
    ("missing rubric file", lambda c: _set(c, "judge.rubric_file", "config/rubrics/nope.txt"),
     ["judge.rubric_file", "file not found"]),
    ("half of analysis-only mode", lambda c: _set(c, "analysis.dataset", "data/x.jsonl"),
     ["analysis.fresh_draws_dir", "analysis-only mode needs both"]),
]


@pytest.mark.parametrize("name,edit,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_config_fails_at_dag_build_naming_the_key(workflow_dir, name, edit, needles):
    cfg = _default(workflow_dir)
    edit(cfg)
    write_config(workflow_dir, "bad.yaml", cfg)
    proc = run_snakemake(workflow_dir, "--configfile", "bad.yaml", "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "invalid workflow config" in out, out
    for needle in needles:
        assert needle in out, (needle, out)
    # failed before any job: nothing was built, no API call logged
    assert not (workflow_dir / "data" / "prompts.jsonl").exists()
    assert not (workflow_dir / "logs" / "api_calls.log").exists()
    assert not (workflow_dir / "results").exists()


def _arena_env(**keys):
    env = {k: v for k, v in os.environ.items() if k not in ("FIREWORKS_API_KEY", "OPENAI_API_KEY")}
    env.update(keys)
    return env


def _run_arena(workflow_dir, env, *targets):
    # subprocess env: start from a copy without the keys (run_snakemake updates os.environ copy)
    import subprocess

    from .wfutil import SNAKEMAKE
    return subprocess.run([SNAKEMAKE, *targets, "-n", "--configfile", "config/arena.yaml"],
                          cwd=workflow_dir, env=env, text=True, capture_output=True, timeout=300)


def test_missing_api_key_fails_before_any_call(workflow_dir):
    """The hosted config without FIREWORKS_API_KEY fails at DAG build, naming the key."""
    proc = _run_arena(workflow_dir, _arena_env(OPENAI_API_KEY="set-but-unused"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "providers.fireworks.api_key_env" in out and "FIREWORKS_API_KEY" in out, out
    assert not (workflow_dir / "logs" / "api_calls.log").exists()

    # only the keys the requested targets need are checked: the judge of base needs OpenAI
    proc = _run_arena(workflow_dir, _arena_env(FIREWORKS_API_KEY="set-but-unused"),
                      "data/judge/base.jsonl")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "providers.openai.api_key_env" in out, out
    proc = _run_arena(workflow_dir, _arena_env(FIREWORKS_API_KEY="set-but-unused"),
                      "data/responses/premium.jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # with both keys set the hosted config builds its DAG (dry run: no call)
    proc = _run_arena(workflow_dir, _arena_env(FIREWORKS_API_KEY="x", OPENAI_API_KEY="y"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dataset" in proc.stdout


@pytest.mark.parametrize("target,needle", [
    ("results/magic-ips/coverage_0.1/estimates.json", "unknown estimator 'magic-ips'"),
    ("results/raw-ips/coverage_1.5/estimates.json", "oracle coverage 1.5 in target path"),
])
def test_bad_target_path_fails_at_dag_build(workflow_dir, target, needle):
    proc = run_snakemake(workflow_dir, target, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and needle in out, out
