"""SIGKILL snakemake (and its job) during generation; the rerun completes without
duplicate rows and without repeating finished calls (real local model): every
answered request is in the request cache (execution.request_cache_dir) the moment it
arrives, and Snakemake deletes the killed job's partial output, not the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from .wfutil import SNAKEMAKE, load_yaml, run_snakemake, write_config

pytestmark = [pytest.mark.llm, pytest.mark.slow]

N_PROMPTS = 10  # the config's grid (coverage 1) needs >= 10 calibration labels


def _jsonl(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _cached_ok(workdir):
    """prompt_ids whose generation is answered in the request cache (status ok)."""
    done = set()
    for entry in (workdir / "data" / "cache" / "requests").rglob("*.json"):
        try:
            rec = json.loads(entry.read_text())
        except ValueError:  # being written right now (temp names are not *.json)
            continue
        if rec.get("status") == "ok" and str(rec.get("stage", "")).startswith("generate"):
            done.add(rec["prompt_id"])
    return done


def _generate_calls(workdir):
    log = workdir / "logs" / "api_calls.log"
    if not log.exists():
        return []
    return [r for r in _jsonl(log) if r.get("stage") == "generate:base" and "prompt_id" in r]


def test_sigkill_during_generation_then_resume(workflow_dir):
    cfg = load_yaml(workflow_dir / ".test" / "config" / "config.yaml")
    cfg["prompts"]["n_samples"] = N_PROMPTS
    cfg["policies"]["base"]["max_tokens"] = 24
    cfg["execution"].update(shards=2)
    write_config(workflow_dir, "kill.yaml", cfg)
    target = "data/responses/base.jsonl"
    env = dict(os.environ)
    env["PATH"] = f"{os.path.dirname(SNAKEMAKE)}{os.pathsep}{env.get('PATH', '')}"
    # its own process group, so the kill takes snakemake, the job and the model server
    err = open(workflow_dir / "snakemake.err", "w")
    proc = subprocess.Popen([SNAKEMAKE, target, "--configfile", "kill.yaml", "--cores", "1"],
                            cwd=workflow_dir, env=env, stdout=subprocess.DEVNULL,
                            stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(_cached_ok(workflow_dir)) < 2:
            assert proc.poll() is None, ("snakemake ended before the kill: "
                                         + (workflow_dir / "snakemake.err").read_text()[-2000:])
            assert time.monotonic() < deadline, "no generation finished within 300 s"
            time.sleep(0.2)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # snakemake, the job and the model server
        except ProcessLookupError:  # the group already ended (the assertion above says why)
            pass
        proc.wait()
        err.close()
    assert not (workflow_dir / target).exists()
    calls_before = len(_generate_calls(workflow_dir))
    cached = _cached_ok(workflow_dir)
    assert 2 <= len(cached) < N_PROMPTS

    # resume: release the stale lock, rerun the incomplete job
    run_snakemake(workflow_dir, "--unlock", "--configfile", "kill.yaml")
    run_snakemake(workflow_dir, target, "--configfile", "kill.yaml", "--cores", "1",
                  "--rerun-incomplete", timeout=600)

    rows = _jsonl(workflow_dir / target)
    keys = [(r["prompt_id"], r["draw_idx"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_PROMPTS
    assert all(r["status"] == "ok" for r in rows)
    new_calls = _generate_calls(workflow_dir)[calls_before:]
    # finished calls are not repeated: the rerun asks only for what the cache lacks
    assert not {c["prompt_id"] for c in new_calls} & cached
    assert len(new_calls) == N_PROMPTS - len(cached)
    # and what was cached is what was published
    published = {r["prompt_id"]: r["response"] for r in rows}
    for entry in (workflow_dir / "data" / "cache" / "requests").rglob("*.json"):
        rec = json.loads(entry.read_text())
        if rec.get("status") == "ok" and str(rec.get("stage", "")).startswith("generate"):
            assert rec["prompt_id"] in published
