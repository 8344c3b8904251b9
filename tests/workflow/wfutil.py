"""Helpers of the workflow tests: a temp copy of the workflow and real snakemake runs.

Every test runs the real ``snakemake`` CLI of this venv in a subprocess, in a
temporary copy of the workflow (Snakefile, rules, scripts, config, cje sources),
so runs never touch the checkout's data/, results/ or .snakemake/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# The small simulated dataset shipped in the repository (.test/data/make.py).
TEST_DATA = REPO / ".test" / "data"
SERVERS = REPO / "tests" / "servers"
FAKE_KEY_ENV = "CJE_WORKFLOW_TEST_KEY"
# What a workflow copy needs: the workflow itself, its configs and the cje sources
# (the code-hash params read them).
COPY_ITEMS = ["Snakefile", "rules", "scripts", "schemas", "config", "envs", "report",
              "profiles", ".test", "cje", "data/default_prompts.jsonl"]


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow into ``dest`` (without caches) and return it."""
    for item in COPY_ITEMS:
        src = REPO / item
        target = dest / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    return dest


def write_config(workdir: Path, name: str, cfg: dict) -> str:
    """Write ``cfg`` as a config file in ``workdir`` and return its relative path."""
    path = workdir / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return name


def load_yaml(path: Path) -> dict:
    """Read one YAML file."""
    return yaml.safe_load(path.read_text())


def analysis_only_config(**analysis) -> dict:
    """Analysis-only config on the shipped simulated dataset (200 prompts, 3 targets;
    .test/data, absolute paths), plots off."""
    cfg = {"analysis": {"dataset": str(TEST_DATA / "logged_data.jsonl"),
                        "fresh_draws_dir": str(TEST_DATA / "fresh_draws"),
                        "estimators": ["calibrated-ips"], "oracle_coverages": [0.5],
                        "seeds": [0], "plots": False}}
    cfg["analysis"].update(analysis)
    return cfg


def write_prompts(path: Path, n: int, start: int = 0) -> Path:
    """Write prompts ``q{start}..q{start+n-1}`` (prompt_id, prompt) to ``path`` (replacing it)."""
    with open(path, "w") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"prompt_id": f"q{i:03d}",
                                 "prompt": f"q{i:03d}: say something about {i}"}) + "\n")
    return path


def api_config(url: str, prompts: str = "prompts.jsonl", provider: str = "fake", **execution) -> dict:
    """A workflow config whose one hosted provider (``kind: openai``) is a local fake
    server at ``url`` (tests/servers), key from ``$CJE_WORKFLOW_TEST_KEY``: the whole
    LLM chain in seconds. Two policies, yes/no judge and a 2-rubric oracle."""
    policy = {"provider": provider, "model": "fake-model", "chat_template": "chatml",
              "system_prompt": "You are a helpful assistant.", "temperature": 1.0, "max_tokens": 16}
    return {
        "prompts": {"source": prompts, "n_samples": None, "seed": 1},
        "providers": {provider: {"kind": "openai", "base_url": url, "api_key_env": FAKE_KEY_ENV,
                                 "max_concurrency": 4, "timeout_s": 10, "max_retries": 2,
                                 "retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05}},
        "base_policy": "base",
        "policies": {"base": policy, "short": {**policy, "system_prompt": "Answer in one sentence."}},
        "judge": {"provider": provider, "model": "judge-model", "method": "yes_no_logprob",
                  "rubric_file": "config/rubrics/judge.txt"},
        "oracle": {"provider": provider, "model": "oracle-model", "method": "yes_no_logprob",
                   "rubric_file": "config/rubrics/oracle.txt", "n_rubric_samples": 2,
                   "coverage": 1.0, "fresh_draw_coverage": 1.0, "seed": 7},
        "fresh_draws": {"draws_per_prompt": 1},
        "execution": {"shards": 2, **execution},
        "analysis": {"estimators": ["calibrated-ips"], "oracle_coverages": [0.5], "seeds": [0],
                     "probe_coverage": 0.25, "plots": False},
    }


def key_env(present: bool = True) -> dict:
    """Environment for snakemake with the fake provider's key set, or without it."""
    env = {k: v for k, v in os.environ.items() if k != FAKE_KEY_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if present:
        env[FAKE_KEY_ENV] = "sk-workflow-test-not-a-real-key"
    return env


def run_snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 600,
                  check: bool = True, replace_env: bool = False) -> subprocess.CompletedProcess:
    """Run ``snakemake args`` in ``workdir``; raise with its output if it fails and check.

    ``env`` updates this process's environment, or replaces it with ``replace_env``."""
    full_env = {} if replace_env else dict(os.environ)
    if env is not None:
        full_env.update(env)
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    proc = subprocess.run([SNAKEMAKE, *args], cwd=workdir, env=full_env, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")


def planned_jobs(workdir: Path, *args: str, env: dict | None = None) -> Counter:
    """Jobs a dry run plans, by rule (``snakemake -n --quiet rules``); empty when up to date."""
    proc = run_snakemake(workdir, *args, "-n", "--quiet", "rules", env=env)
    out = proc.stdout + proc.stderr
    jobs: Counter = Counter()
    in_table = False
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("job") and "count" in line:
            in_table = True
            continue
        if in_table:
            match = _STATS_ROW.match(line)
            if match and match.group(1) != "total":
                jobs[match.group(1)] = int(match.group(2))
            elif match and match.group(1) == "total":
                assert sum(jobs.values()) == int(match.group(2)), out
                break
    if not jobs:
        assert "Nothing to be done" in out, out
    return jobs


def mark_complete(workdir: Path, *args: str) -> None:
    """Make every output of the DAG exist and be recorded as up to date, without running it.

    Creates the missing outputs (directories for ``directory()`` outputs) that
    ``--summary`` lists, then ``--touch --forceall`` records their metadata
    (params, code) in DAG order, as a real run would.
    """
    proc = run_snakemake(workdir, "--summary", *args)
    for line in proc.stdout.splitlines()[1:]:
        name = line.split("\t")[0]
        if not name or name.startswith(("Building", "Using")):
            continue
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/plots"):
            path.mkdir(exist_ok=True)
        elif not path.exists():
            path.touch()
    run_snakemake(workdir, "--touch", "--forceall", "--cores", "1", *args)
