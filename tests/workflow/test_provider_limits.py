"""Provider limits hold across concurrently running jobs of the workflow (issue 11.5).

- The rate limit: 8 generate jobs (one policy, execution.shards 8, --cores 8) run at
  once against the simulated provider (tests/servers/provider_sim.py, which logs
  every request's arrival); the workflow hands all of them the same
  execution.rate_limit_dir, so together they stay within requests_per_minute in
  every sliding window, with no HTTP 429. (tests/llm/test_shared_rate_limit.py tests
  the limiter itself with 8 `cje generate` processes; this test tests the workflow's
  wiring: Snakemake jobs, config keys, storage-aware folder.)
- The per-provider resource: with --resources api_<provider>=2 at most 2 LLM jobs
  of that provider run at once, whatever --cores allows (the SLURM profile sets it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from .wfutil import SERVERS, api_config, key_env, run_snakemake, write_config, write_prompts

LLM_RULES = ("generate", "logprobs", "judge", "oracle")
JOBS, PROMPTS, RPM, WINDOW_S = 8, 200, 1200, 5.0  # 100 requests per 5-s window


def max_concurrent(log: str, rules=LLM_RULES) -> int:
    """Most jobs of ``rules`` running at once, from snakemake's log (job start blocks
    'rule R:' ... 'jobid: N' and 'Finished jobid: N' lines, in the order they happen)."""
    running, peak, rule = set(), 0, None
    for line in log.splitlines():
        line = line.strip()
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif (m := re.match(r"^jobid: (\d+)$", line)) and rule is not None:
            if rule in rules:
                running.add(m.group(1))
                peak = max(peak, len(running))
            rule = None
        elif m := re.match(r"^Finished jobid: (\d+)", line):
            running.discard(m.group(1))
    return peak


def test_rate_limit_holds_across_eight_concurrent_jobs(workflow_dir, tmp_path):
    sys.path.insert(0, str(SERVERS))
    import provider_sim

    settings = tmp_path / "sim.json"
    settings.write_text(json.dumps({"latency_median_s": 0.02, "latency_sigma": 0.3,
                                    "rpm": RPM, "window_s": WINDOW_S}))
    requests_log = tmp_path / "requests.jsonl"
    sim = subprocess.Popen([sys.executable, str(SERVERS / "provider_sim.py"), "--settings",
                            str(settings), "--log", str(requests_log)], stdout=subprocess.PIPE, text=True)
    try:
        url = sim.stdout.readline().split()[1]
        write_prompts(workflow_dir / "prompts.jsonl", PROMPTS)
        cfg = api_config(url, provider="sim", shards=JOBS)
        cfg["providers"]["sim"].update(requests_per_minute=RPM, rate_limit_window_s=WINDOW_S,
                                       max_concurrency=4)
        write_config(workflow_dir, "sim.yaml", cfg)
        proc = run_snakemake(workflow_dir, "data/responses/base.jsonl", "--configfile", "sim.yaml",
                             "--cores", str(JOBS), env=key_env(True), replace_env=True, timeout=600)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    log = proc.stdout + proc.stderr
    assert max_concurrent(log, ("generate",)) == JOBS, log  # all 8 jobs ran at once
    records = provider_sim.read_log(requests_log)
    s = provider_sim.summarize_log(records, rpm=RPM, window_s=WINDOW_S)
    # the stage's provider preflight: one probe shared through the request cache (a job starting
    # before the first answer is cached may send it too), the rows apart; no 429 at all
    n_probes = sum(bool(r.get("preflight")) for r in records)
    assert 1 <= n_probes <= JOBS, records[:3]
    assert s["by_status"] == {"200": PROMPTS + n_probes}, s  # no 429: the jobs never asked too fast
    assert s["peak_requests_in_window"] <= s["request_limit_in_window"], s
    # the limit binds: alone, each job could send 4 requests per 20 ms
    assert s["peak_requests_in_window"] >= 0.7 * s["request_limit_in_window"], s
    # the state the jobs shared is the configured folder
    assert list((workflow_dir / "data" / "cache" / "rate_limits").iterdir())


def test_provider_resource_caps_jobs_per_provider(workflow_dir, fake_api):
    write_prompts(workflow_dir / "prompts.jsonl", 20)
    write_config(workflow_dir, "api.yaml", api_config(fake_api.url, shards=4))
    proc = run_snakemake(workflow_dir, "data/cje_dataset.jsonl", "--configfile", "api.yaml",
                         "--cores", "6", "--resources", "api_fake=2", env=key_env(True),
                         replace_env=True)
    log = proc.stdout + proc.stderr
    assert "api_fake=1" in log  # every LLM job claims one unit of its provider's resource
    assert max_concurrent(log) == 2, log
