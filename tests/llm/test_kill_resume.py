"""SIGKILL ``cje generate`` mid-stage, rerun: nothing lost, nothing duplicated, and the
fault server's counts show that answered requests were not sent again (the per-request
cache keeps every answer the moment it arrives)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from cje.llm.client.cache import RequestCache
from cje.llm.stages.io import read_jsonl
from llm_testlib import REPO, make_config, write_config, write_prompts

N_PROMPTS, CONCURRENCY = 40, 4


def _answered(cache_dir) -> set[str]:
    """prompt_ids whose answers are complete entries of the request cache (rows only: the
    stage preflight's probe is an entry too, with prompt_id ``preflight:<capability>``)."""
    return {e["prompt_id"] for e in RequestCache(cache_dir).entries()
            if not e["prompt_id"].startswith("preflight:")}


def _cmd(tmp_path, cfg, prompts, out, cache):
    return [sys.executable, "-m", "cje", "generate", "--config", str(cfg), "--policy", "base",
            "--prompts", str(prompts), "--output", str(out), "--request-cache", str(cache),
            "--api-log", str(tmp_path / "api.log")]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_sigkill_then_rerun_gives_every_row_once_without_repaying(fault_server, fake_key,
                                                                  tmp_path):
    fault_server.latency_s = 0.4  # 40 prompts / 4 in flight * 0.4 s = 4 s of work
    prompts = write_prompts(tmp_path / "prompts.jsonl", N_PROMPTS)
    cfg = write_config(tmp_path / "cfg.yaml",
                       make_config(fault_server.url, max_concurrency=CONCURRENCY))
    out = tmp_path / "responses" / "base.jsonl"
    cache = tmp_path / "requests"
    cmd = _cmd(tmp_path, cfg, prompts, out, cache)

    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_answered(cache)) < 10:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no progress within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _answered(cache)
    assert 10 <= len(finished) < N_PROMPTS, "killed too late to test resume"
    assert not out.exists()
    requests_before = fault_server.rows_total()

    rerun = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]

    rows = read_jsonl(out)
    keys = [(r["prompt_id"], r["draw_idx"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_PROMPTS
    assert keys == sorted((f"q{i:03d}", 0) for i in range(N_PROMPTS))
    assert all(r["status"] == "ok" and r["response"] for r in rows)
    for pid in finished:  # answered before the kill: asked exactly once
        assert fault_server.count(f"{pid}: say something about {int(pid[1:])}") == 1, pid
    # requests sent twice are at most those in flight at the kill
    assert 0 <= fault_server.rows_total() - N_PROMPTS <= CONCURRENCY
    # the rerun asked for exactly the rows that were not answered yet (its preflight: cached)
    assert fault_server.rows_total() - requests_before == N_PROMPTS - len(finished)
    assert fault_server.preflight_total() == 1
    assert "40 from the request cache" not in rerun.stderr.decode()
    assert f"{len(finished)} from the request cache" in rerun.stderr.decode()


def test_sigterm_stops_with_a_clear_message_and_keeps_answers(fault_server, fake_key, tmp_path):
    """SIGTERM (Snakemake or SLURM cancelling a job) stops the stage with exit 2 and a
    one-line message; every answer received before it is in the request cache."""
    fault_server.latency_s = 0.1
    prompts = write_prompts(tmp_path / "prompts.jsonl", N_PROMPTS)
    cfg = write_config(tmp_path / "cfg.yaml", make_config(fault_server.url, max_concurrency=2))
    out = tmp_path / "base.jsonl"
    cache = tmp_path / "requests"
    proc = subprocess.Popen(_cmd(tmp_path, cfg, prompts, out, cache), cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while fault_server.rows_total() < 6:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no progress within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "terminated by SIGTERM" in err.decode()
    assert len(_answered(cache)) >= 4 and not out.exists()
