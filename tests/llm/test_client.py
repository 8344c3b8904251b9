"""The async client against the real fault-injecting HTTP server (no mocks)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from cje.llm.client.calllog import Accounting, CallLog

from cje.llm.client.http import FatalAPIError, LLMClient
from cje.llm.client.ratelimit import RateLimits
from cje.llm.config import provider_config
from llm_testlib import FAKE_KEY, make_config
from fault_server import Rule


def _run(srv, tmp_path, coro_fn, **cfg_kw):
    cfg = make_config(srv.url, **cfg_kw)
    prov = provider_config(cfg, "fault")
    log = CallLog(tmp_path / "api.log")
    acct = Accounting()

    async def main():
        async with LLMClient(prov, srv.url, "test", log, acct) as client:
            return await coro_fn(client)
    return asyncio.run(main()), acct, tmp_path / "api.log"


def _chat(client, text):
    return client.chat([{"role": "user", "content": text}], model="m", prompt_id=text,
                       max_tokens=8)


@pytest.mark.parametrize("fault", ["429", "500", "drop", "malformed", "slow"])
def test_transient_fault_is_retried_then_succeeds(fault_server, fake_key, tmp_path, fault):
    fault_server.set_rules([Rule(fault, match="x", times=2, slow_s=1.0)])
    res, acct, log = _run(fault_server, tmp_path, lambda c: _chat(c, "x"), timeout_s=0.3)
    assert res.ok and res.value.startswith("Response ")
    assert res.retries == 2
    assert fault_server.count("x") == 3
    lines = [json.loads(s) for s in log.read_text().splitlines()]
    assert [ln["status"] for ln in lines] == ["retry", "retry", "ok"]
    assert [ln["retries"] for ln in lines] == [0, 1, 2]
    assert acct.summary()[0]["ok"] == 1


def test_retry_after_is_honoured(fault_server, fake_key, tmp_path):
    fault_server.set_rules([Rule("429", match="x", times=1, retry_after=0.4)])
    t0 = time.monotonic()
    res, _, _ = _run(fault_server, tmp_path, lambda c: _chat(c, "x"))
    assert res.ok
    assert time.monotonic() - t0 >= 0.4  # backoff (<= 0.01 s) alone would be far shorter


def test_exhausted_retries_give_error_result_not_exception(fault_server, fake_key, tmp_path):
    fault_server.set_rules([Rule("500", match="x")])
    res, acct, log = _run(fault_server, tmp_path, lambda c: _chat(c, "x"), max_retries=2)
    assert not res.ok and res.value is None
    assert "HTTP 500" in res.error and "gave up after 2 retries" in res.error
    assert fault_server.count("x") == 3
    assert json.loads(log.read_text().splitlines()[-1])["status"] == "error"
    assert acct.summary()[0]["errors"] == 1


def test_400_is_not_retried(fault_server, fake_key, tmp_path):
    fault_server.set_rules([Rule("400", match="x", message="prompt too long")])
    res, _, _ = _run(fault_server, tmp_path, lambda c: _chat(c, "x"))
    assert not res.ok and "prompt too long" in res.error
    assert fault_server.count("x") == 1


def test_401_raises_with_provider_message_and_stops_further_calls(fault_server, fake_key,
                                                                   tmp_path):
    fault_server.set_rules([Rule("401", match="x", message="Incorrect API key provided")])

    async def body(client):
        with pytest.raises(FatalAPIError, match="Incorrect API key provided") as err:
            await _chat(client, "x")
        assert err.value.status == 401
        with pytest.raises(FatalAPIError):  # no request is sent after a fatal error
            await _chat(client, "y")
    _run(fault_server, tmp_path, body)
    assert fault_server.count("x") == 1 and fault_server.count("y") == 0


def test_key_echoed_by_provider_is_scrubbed(fault_server, fake_key, tmp_path):
    fault_server.set_rules([Rule("401", match="x", message=f"bad key {FAKE_KEY}")])

    async def body(client):
        with pytest.raises(FatalAPIError) as err:
            await _chat(client, "x")
        assert FAKE_KEY not in str(err.value)
    _, _, log = _run(fault_server, tmp_path, body)
    assert f"Bearer {FAKE_KEY}" in fault_server.auth_headers  # the key was really sent
    assert FAKE_KEY not in log.read_text() and "***" in log.read_text()


def test_call_log_fields_and_no_prompt_without_debug(fault_server, fake_key, tmp_path):
    res, acct, log = _run(fault_server, tmp_path, lambda c: _chat(c, "secret prompt text"))
    rec = json.loads(log.read_text().splitlines()[0])
    for f in ("ts", "stage", "provider", "model", "prompt_id", "latency_s", "prompt_tokens",
              "completion_tokens", "status", "retries", "error"):
        assert f in rec
    assert "debug_prompt" not in rec
    row = acct.summary()[0]
    assert row["prompt_tokens"] == rec["prompt_tokens"] > 0
    expected = (row["prompt_tokens"] * 1.0 + row["completion_tokens"] * 2.0) / 1e6
    assert row["cost_usd"] == pytest.approx(expected)


def test_concurrency_limit_bounds_requests_in_flight(fault_server, fake_key, tmp_path):
    fault_server.latency_s = 0.1

    async def body(client):
        return await asyncio.gather(*[_chat(client, f"c{i}") for i in range(12)])
    t0 = time.monotonic()
    results, _, _ = _run(fault_server, tmp_path, body, max_concurrency=3)
    assert all(r.ok for r in results)
    # 12 requests, at most 3 at a time, 0.1 s each: at least 4 rounds
    assert time.monotonic() - t0 >= 0.4


def test_rate_limiter_spaces_requests():
    async def main():
        lim = RateLimits(requests_per_minute=1200, tokens_per_minute=None)
        t0 = time.monotonic()
        for _ in range(40):
            await lim.acquire()
        return time.monotonic() - t0
    # 1200 per 60 s window: r = 1200 / (60 + 1 + 0.25) per s, a burst of r * 1 s; the
    # other requests are spaced 1 / r apart
    b = RateLimits(1200, None).buckets["requests"]
    assert asyncio.run(main()) >= (40 - b.capacity) / b.rate - 0.05


def test_completions_logprobs_reach_parser(fault_server, fake_key, tmp_path):
    async def body(client):
        return await client.complete("Is it? Reply:", model="m", prompt_id="p", max_tokens=1,
                                     logprobs=5)
    res, _, _ = _run(fault_server, tmp_path, body)
    tops = res.value.logprobs.top_logprobs[0]
    assert set(tops) == {" Yes", " No"}


def test_debug_log_has_prompt_and_answer(fault_server, fake_key, tmp_path):
    cfg = make_config(fault_server.url)
    prov = provider_config(cfg, "fault")
    log = CallLog(tmp_path / "api.log", debug=True)

    async def main():
        async with LLMClient(prov, fault_server.url, "test", log) as client:
            return await _chat(client, "debug me")
    assert asyncio.run(main()).ok
    rec = json.loads((tmp_path / "api.log").read_text().splitlines()[0])
    assert rec["debug_prompt"] == [{"role": "user", "content": "debug me"}]
    assert rec["debug_answer"].startswith("Response ")


def test_a_stage_whose_first_calls_are_all_refused_stops(fault_server, fake_key, tmp_path):
    fault_server.set_rules([Rule("400", message="response_format is not supported")])

    async def body(client):
        results = [await _chat(client, f"r{i}") for i in range(5)]
        assert all(not r.ok for r in results)
        with pytest.raises(FatalAPIError, match="first 5 calls were all refused.*"
                                                "response_format is not supported"):
            await _chat(client, "r5")
    _run(fault_server, tmp_path, body)
    assert fault_server.total() == 5


def test_refusals_after_a_success_stay_row_errors(fault_server, fake_key, tmp_path):
    fault_server.set_rules([Rule("400", match="bad", message="prompt too long")])

    async def body(client):
        assert (await _chat(client, "good")).ok
        results = [await _chat(client, f"bad{i}") for i in range(7)]
        assert all(not r.ok and "prompt too long" in r.error for r in results)
    _run(fault_server, tmp_path, body)


def test_run_cost_summary_sums_stage_summaries(fault_server, fake_key, tmp_path):
    from cje.llm.client.calllog import run_cost_summary
    from cje.llm.client.http import run_with_client
    prov = provider_config(make_config(fault_server.url), "fault")
    log = tmp_path / "api.log"
    for _ in range(2):  # a run and a rerun of the same stage
        run_with_client(prov, "judge:base", log, lambda c: _chat(c, "x"))
    rows = run_cost_summary(log)
    assert len(rows) == 1 and rows[0]["stage"] == "judge:base" and rows[0]["calls"] == 2
    per_call = [json.loads(s) for s in log.read_text().splitlines() if '"status"' in s]
    assert rows[0]["prompt_tokens"] == sum(r["prompt_tokens"] for r in per_call)
    assert rows[0]["cost_usd"] == pytest.approx(
        (rows[0]["prompt_tokens"] * 1.0 + rows[0]["completion_tokens"] * 2.0) / 1e6)
    assert run_cost_summary(tmp_path / "none.log") == []
