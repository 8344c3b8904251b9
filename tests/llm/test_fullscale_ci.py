"""A CI-sized version of the full-scale run (issue 13): 500 prompts, a base policy and a
clone, judge, 10 % oracle, 2 shards, through Snakemake against the simulated provider,
killed with SIGKILL at ~50 % and rerun. Everything is counted from the simulator's own
request log (``tests/servers/provider_sim.py``):

- every distinct request is answered exactly once, and the distinct requests per stage
  equal the minimum computed from the outputs (the clone's log-prob requests are the
  base's: sent once, by whichever job claims them first);
- after the kill and the rerun, no request answered before the kill is sent again, no
  row is lost or duplicated, and every data file equals the uninterrupted run's;
- the requests that arrived in any 5-s window stay within the rate limit (10 % slack on
  an overloaded machine, see test_shared_rate_limit.py).
"""

from __future__ import annotations

import json
import sys

import pytest

from llm_testlib import REPO

sys.path.insert(0, str(REPO))
from benchmarks import fullscale  # noqa: E402

pytestmark = pytest.mark.slow
N, RPM, WINDOW_S = 500, 12_000, 5.0


def test_ci_sized_full_run_exactly_once_kill_and_rate(tmp_path):
    settings = {**json.loads(fullscale.SETTINGS.read_text()), "rpm": RPM, "tpm": None,
                "window_s": WINDOW_S, "latency_median_s": 0.05}
    cfg_kw = dict(policies=["base", "clone"], shards=2, estimators=["calibrated-ips"],
                  coverages=[0.1], rpm=RPM, tpm=None, window_s=WINDOW_S)
    res = fullscale.run(N, parts=("full", "kill"), cores=8, out_dir=tmp_path, settings=settings,
                        cfg_kw=cfg_kw, name="ci", work_root=tmp_path)
    full = res["full"]
    assert full["run"]["returncode"] == 0
    for stage in ("generate", "logprobs", "judge", "oracle"):
        st = full["stages"][stage]
        assert st["answered_twice"] == 0, (stage, st)
        assert st["distinct_answered"] == st["minimum"], (stage, st)
    # base and clone share their requests; the stage's provider preflight adds its probes
    logprobs = full["stages"]["logprobs"]
    assert 1 <= logprobs["preflight"] <= 2 and logprobs["minimum"] == N + logprobs["preflight"], logprobs
    assert full["rows"] == {"files": 8, "duplicated": 0, "missing": 0, "errors": 0}

    kill = res["kill"]
    assert kill["rerun"]["returncode"] == 0 and kill["killed"]["killed_at"] is not None
    assert 0.3 <= kill["share_answered_at_kill"] <= 0.8, kill
    assert kill["resent_answered"] == 0, kill
    assert kill["rows"]["duplicated"] == 0 and kill["rows"]["missing"] == 0
    assert kill["files_differing_from_full_run"] == []

    peak = full["peak"]
    assert peak["peak_requests_in_window"] <= 1.10 * peak["request_limit_in_window"], peak
