"""The provider rate limit holds across 8 concurrently running jobs (issue 11.5).

Eight ``cje generate`` processes (shards 0..7 of one prompt set) use one provider:
the simulated provider (``tests/servers/provider_sim.py``) logs every request it
receives. With one shared ``--rate-limit-dir`` the requests that *arrived* in any
sliding window stay at the limit (at low machine load: within it; a few percent
over on an overloaded machine, from processes starved of CPU between reserving a
slot and sending, which the provider answers with 429 and the clients retry), the
requests it admitted never exceed it, and each request is answered once. The control run, each job limiting only itself, offers
well over the limit (up to 8 x; here all 200 requests fit in about one window):
what the shared state prevents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import provider_sim
from llm_testlib import REPO, make_config, write_config, write_prompts

JOBS, PROMPTS, RPM, WINDOW_S = 8, 200, 1200, 5.0  # 100 requests per 5-s window


def _nice_up() -> None:
    try:  # the provider is not slowed down by its clients' machine: give it priority
        os.nice(-5)
    except OSError:
        pass


def _run_jobs(tmp_path, name: str, shared: bool) -> dict:
    settings = tmp_path / "sim.json"
    settings.write_text(json.dumps({"latency_median_s": 0.02, "latency_sigma": 0.3,
                                    "rpm": RPM, "window_s": WINDOW_S}))
    log = tmp_path / f"{name}.requests.jsonl"
    sim = subprocess.Popen([sys.executable, str(REPO / "tests/servers/provider_sim.py"),
                            "--settings", str(settings), "--log", str(log)],
                           stdout=subprocess.PIPE, text=True, preexec_fn=_nice_up)
    try:
        url = sim.stdout.readline().split()[1]
        cfg = make_config(url, max_concurrency=4, timeout_s=10, max_retries=3)
        cfg["providers"]["fault"].update(requests_per_minute=RPM, rate_limit_window_s=WINDOW_S,
                                         retry_after_max_s=WINDOW_S)
        write_config(tmp_path / "cfg.yaml", cfg)
        prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        shared_flag = ["--rate-limit-dir", str(tmp_path / "limits")] if shared else []
        jobs = [subprocess.Popen(
            [sys.executable, "-m", "cje", "generate", "--config", str(tmp_path / "cfg.yaml"),
             "--policy", "base", "--prompts", str(prompts),
             "--output", str(tmp_path / f"{name}{i}.jsonl"), "--shard", str(i),
             "--num-shards", str(JOBS), "--request-cache", str(tmp_path / f"{name}-rc"),
             *shared_flag, "--api-log", str(tmp_path / "api.log")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(JOBS)]
        for j in jobs:
            assert j.wait(timeout=240) == 0, j.stderr.read().decode()[-2000:]
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    records = provider_sim.read_log(log)
    # the stage's provider preflight: one probe, shared through the request cache (a job that
    # starts before the first answer is cached may send it too); rows are counted apart
    probes = [r for r in records if r.get("preflight")]
    assert 1 <= sum(r["status"] == 200 for r in probes) <= JOBS, probes
    s = provider_sim.summarize_log(records, rpm=RPM, window_s=WINDOW_S)  # the load: every request
    rows = provider_sim.summarize_log([r for r in records if not r.get("preflight")], rpm=RPM, window_s=WINDOW_S)
    s.update(keys_answered=rows["keys_answered"], keys_answered_twice=rows["keys_answered_twice"])
    admitted = [r["t"] for r in records if r["status"] != 429]
    s["peak_admitted_in_window"] = provider_sim.peak_in_window(admitted, [1.0] * len(admitted),
                                                               WINDOW_S)
    return s


def test_eight_jobs_sharing_a_rate_limit_dir_stay_within_the_limit(tmp_path, fake_key):
    s = _run_jobs(tmp_path, "shared", shared=True)
    limit = s["request_limit_in_window"]
    assert s["keys_answered"] == PROMPTS and s["keys_answered_twice"] == 0, s
    assert s["peak_admitted_in_window"] <= limit, s
    # offered load at the limit; up to 10 % over only on an overloaded machine (measured:
    # 8 % at load average 14 on 2 cores: requests reach the provider up to ~0.4 s after
    # their reserved start), and those few are answered 429 and retried
    assert s["peak_requests_in_window"] <= 1.10 * limit, s
    assert s["by_status"].get("429", 0) <= 0.10 * PROMPTS, s
    assert s["peak_requests_in_window"] >= 0.7 * limit, s  # and the limit binds

    control = _run_jobs(tmp_path, "alone", shared=False)  # each job holds only its own limit
    assert control["peak_requests_in_window"] > 1.5 * limit, control
