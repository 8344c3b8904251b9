"""SIGKILL ``cje generate`` mid-stage, rerun: nothing lost, nothing duplicated, and the
fault server's counts show that finished rows were not requested again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from cje.llm.cache import read_jsonl
from llm_testlib import REPO, make_config, write_config, write_prompts

N_PROMPTS, CONCURRENCY, BATCH = 40, 4, 5


def _cache_keys(path):
    """prompt_ids of the complete lines of the cache file (a torn last line is ignored)."""
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        try:
            keys.add(json.loads(line)["prompt_id"])
        except ValueError:
            pass
    return keys


def test_sigkill_then_rerun_gives_every_row_once_without_repaying(fault_server, fake_key,
                                                                  tmp_path):
    fault_server.latency_s = 0.4  # 40 prompts / 4 in flight * 0.4 s = 4 s of work
    prompts = write_prompts(tmp_path / "prompts.jsonl", N_PROMPTS)
    cfg = write_config(tmp_path / "cfg.yaml",
                       make_config(fault_server.url, max_concurrency=CONCURRENCY))
    out = tmp_path / "responses" / "base.jsonl"
    cache = tmp_path / "responses" / "base.jsonl.cache.jsonl"
    cmd = [sys.executable, "-m", "cje", "generate", "--config", str(cfg), "--policy", "base",
           "--prompts", str(prompts), "--output", str(out), "--batch-size", str(BATCH),
           "--api-log", str(tmp_path / "api.log")]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_cache_keys(cache)) < 2 * BATCH:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no progress within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _cache_keys(cache)
    assert 2 * BATCH <= len(finished) < N_PROMPTS, "killed too late to test resume"
    assert not out.exists()
    requests_before = fault_server.total()

    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]

    rows = read_jsonl(out)
    keys = [(r["prompt_id"], r["draw_idx"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_PROMPTS
    assert keys == sorted((f"q{i:03d}", 0) for i in range(N_PROMPTS))
    assert all(r["status"] == "ok" and r["response"] for r in rows)
    for pid in finished:  # finished before the kill: asked exactly once
        assert fault_server.count(f"{pid}: say something about {int(pid[1:])}") == 1, pid
    # repeated requests are only those in flight or unflushed at the kill
    repeated = fault_server.total() - N_PROMPTS
    assert 0 <= repeated <= CONCURRENCY + BATCH
    # the rerun asked for exactly the rows that were not in the cache
    assert fault_server.total() - requests_before == N_PROMPTS - len(finished)


def test_sigterm_flushes_the_unfinished_batch(fault_server, fake_key, tmp_path):
    """SIGTERM (Snakemake or SLURM cancelling a job) keeps every finished row, even those
    of a batch that was not full yet, and exits with a clear message."""
    fault_server.latency_s = 0.1
    prompts = write_prompts(tmp_path / "prompts.jsonl", N_PROMPTS)
    cfg = write_config(tmp_path / "cfg.yaml", make_config(fault_server.url, max_concurrency=2))
    out = tmp_path / "base.jsonl"
    cache = tmp_path / "base.jsonl.cache.jsonl"
    cmd = [sys.executable, "-m", "cje", "generate", "--config", str(cfg), "--policy", "base",
           "--prompts", str(prompts), "--output", str(out), "--batch-size", "1000",
           "--api-log", str(tmp_path / "api.log")]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while fault_server.total() < 6:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no progress within 120 s"
        time.sleep(0.02)
    assert not cache.exists()  # batch of 1000 not full: nothing flushed yet
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "terminated by SIGTERM" in err.decode()
    kept = _cache_keys(cache)
    assert len(kept) >= 4 and not out.exists()
