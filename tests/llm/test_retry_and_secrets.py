"""Retry policy (issue 14.5) and secret scrubbing (issue 14.6), against the fault server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from cje.errors import ConfigError
from cje.llm.client.calllog import Accounting, CallLog
from cje.llm.client.http import FatalAPIError, LLMClient
from cje.llm.config import provider_config
from cje.llm.client.retry import RateLimitedError, RetryState
from cje.llm.scrub import Scrubber, is_env_var_name, scrub_key_like
from llm_testlib import FAKE_KEY, make_config
from fault_server import Rule


def _run(srv, tmp_path, coro_fn, **provider_kw):
    cfg = make_config(srv.url)
    cfg["providers"]["fault"].update(provider_kw)
    prov = provider_config(cfg, "fault")
    log = CallLog(tmp_path / "api.log")

    async def main():
        async with LLMClient(prov, srv.url, "test", log, Accounting()) as client:
            return await coro_fn(client)
    return asyncio.run(main()), [json.loads(s) for s in (tmp_path / "api.log").read_text().splitlines()]


def _chat(client, text):
    return client.chat([{"role": "user", "content": text}], model="m", prompt_id=text, max_tokens=8)


def test_retry_after_is_capped(fault_server, fake_key, tmp_path):
    """A provider asking for a day's wait is waited on for retry_after_max_s only."""
    fault_server.set_rules([Rule("429", match="x", times=1, retry_after=86400)])
    t0 = time.monotonic()
    res, lines = _run(fault_server, tmp_path, lambda c: _chat(c, "x"), retry_after_max_s=0.3)
    assert res.ok and 0.3 <= time.monotonic() - t0 < 5
    assert lines[0]["reason"] == "rate_limited" and lines[0]["wait_s"] == pytest.approx(0.3)
    state = RetryState(provider_config(make_config("http://127.0.0.1:1/v1"), "fault"))
    assert state.capped_retry_after(86400) == 120.0  # the default cap


def test_sustained_429_waits_within_its_budget_and_says_rate_limited(fault_server, fake_key,
                                                                     tmp_path):
    """429 does not use up max_retries: the call keeps waiting until its budget is spent,
    then the stage stops saying 'rate limited' (never 'a config problem')."""
    fault_server.set_rules([Rule("429", retry_after=0.05)])

    async def body(client):
        with pytest.raises(RateLimitedError, match="is rate limiting: HTTP 429") as err:
            await _chat(client, "x")
        assert "config problem" not in str(err.value)
        with pytest.raises(RateLimitedError):  # the stage stops: no further request
            await _chat(client, "y")
    _, lines = _run(fault_server, tmp_path, body, max_retries=1, rate_limit_budget_s=0.5)
    n = fault_server.count("x")
    assert n >= 8  # ~0.5 s / 0.05 s waits, far more than max_retries = 1
    assert fault_server.count("y") == 0
    assert [ln["status"] for ln in lines] == ["retry"] * (n - 1) + ["fatal"]
    assert sum(ln["wait_s"] or 0 for ln in lines) <= 0.5 + 1e-9


def test_a_short_429_spell_then_success_is_not_an_error(fault_server, fake_key, tmp_path):
    fault_server.set_rules([Rule("429", match="x", times=5, retry_after=0.01)])
    res, lines = _run(fault_server, tmp_path, lambda c: _chat(c, "x"), max_retries=1)
    assert res.ok and res.retries == 5 and lines[-1]["status"] == "ok"


def test_timeouts_are_counted_and_capped_separately(fault_server, fake_key, tmp_path):
    """A call that keeps timing out is tried 1 + max_timeouts times (each may be billed),
    however large max_retries is."""
    fault_server.set_rules([Rule("slow", match="x", slow_s=1.0)])
    res, lines = _run(fault_server, tmp_path, lambda c: _chat(c, "x"), timeout_s=0.2,
                      max_timeouts=2, max_retries=9)
    assert not res.ok and "gave up after 3 timeouts" in res.error
    assert fault_server.count("x") == 3
    assert [ln["reason"] for ln in lines] == ["timeout"] * 3


def test_call_log_records_what_each_retry_cost(fault_server, fake_key, tmp_path):
    fault_server.set_rules([Rule("500", match="x", times=1), Rule("nonnumeric", match="x",
                                                                  times=2)])
    from cje.llm.stages.judge import _chat_score

    async def body(client):
        return await client.chat([{"role": "user", "content": "x"}], model="m", prompt_id="p",
                                 max_tokens=8, parse=_chat_score, max_parse_retries=5)
    res, lines = _run(fault_server, tmp_path, body, cost_per_million_input_tokens=1e6)
    assert res.ok
    assert [ln["reason"] for ln in lines] == ["transient", "transient", None]
    assert lines[0]["http_status"] == 500 and lines[0]["attempt_prompt_tokens"] == 0
    assert lines[1]["attempt_prompt_tokens"] > 0  # the unparseable answer was paid for
    assert lines[1]["attempt_cost_usd"] == pytest.approx(
        lines[1]["attempt_prompt_tokens"] * 1.0 + lines[1]["attempt_completion_tokens"] * 2.0 / 1e6)
    assert all(ln["wait_s"] is not None for ln in lines[:2]) and lines[2]["wait_s"] is None


def test_a_judge_error_row_keeps_the_raw_answer(fault_server, fake_key, tmp_path):
    from cje.llm.stages.judge import score_responses
    from cje.llm.stages.io import read_jsonl
    inp = tmp_path / "r.jsonl"
    inp.write_text(json.dumps({"prompt_id": "a", "prompt": "q", "draw_idx": 0, "status": "ok",
                               "response": "resp"}) + "\n")
    fault_server.set_rules([Rule("nonnumeric")])
    cfg = make_config(fault_server.url, judge_method="parse")
    cfg["execution"]["max_failed_share"] = 1.0  # its one row fails: write it (the check is off)
    score_responses(cfg, "judge", str(inp), str(tmp_path / "j.jsonl"), api_log=None)
    row = read_jsonl(tmp_path / "j.jsonl")[0]
    assert row["status"] == "error" and row["judge_score"] is None
    assert row["raw"] == "I think the answer is rather good."


def test_any_8_character_fragment_of_the_key_is_scrubbed(fault_server, fake_key, tmp_path,
                                                         capsys):
    """The provider echoes the key minus its last 4 characters (and its middle): neither
    reaches the error, the call log or stderr."""
    cut, middle = FAKE_KEY[:-4], FAKE_KEY[5:15]
    fault_server.set_rules([Rule("401", match="x", message=f"bad key {cut} (also {middle})")])

    async def body(client):
        with pytest.raises(FatalAPIError) as err:
            await _chat(client, "x")
        return str(err.value)
    message, lines = _run(fault_server, tmp_path, body)
    text = message + (tmp_path / "api.log").read_text() + capsys.readouterr().err
    for fragment in (cut, middle, FAKE_KEY[:8], FAKE_KEY[-8:]):
        assert fragment not in text
    assert "bad key ***" in message


def test_scrubber_rules():
    s = Scrubber()
    s.add("sk-abcdefghijklmnop1234")
    assert s.scrub("x sk-abcdefghijkl y") == "x *** y"
    assert s.scrub("cdefghij") == "***" and s.scrub("cdefghi") == "cdefghi"  # 7 chars pass
    assert s.scrub("no secret here") == "no secret here"
    assert scrub_key_like("Authorization: Bearer abc.def-123") == "Authorization: ***"
    assert scrub_key_like("api_key=zzzzzzzz99") == "api_key=***"
    assert "***" in scrub_key_like("key 3f9a1c0e5b7d2a4f6e8c0b1d3a5f7e9c1b3d5f7a")  # hex key
    assert scrub_key_like("prompt arena_unrelated words") == "prompt arena_unrelated words"


def test_a_key_pasted_into_api_key_env_is_refused_without_being_shown(fault_server):
    cfg = make_config(fault_server.url)
    cfg["providers"]["fault"]["api_key_env"] = FAKE_KEY
    with pytest.raises(ConfigError) as err:
        provider_config(cfg, "fault")
    assert "providers.fault.api_key_env" in str(err.value) and "NAME" in str(err.value)
    for i in range(len(FAKE_KEY) - 7):
        assert FAKE_KEY[i:i + 8] not in str(err.value)
    assert is_env_var_name("FIREWORKS_API_KEY") and not is_env_var_name("fw_3ZRJxQ8mK2pLw9vN4tYb")


def test_policy_names_that_are_not_file_names_are_refused(fault_server, tmp_path):
    """A config policy named ../../ESCAPED cannot make `cje logprobs` write outside its
    --output-dir: the name is refused before anything is read or written."""
    import yaml
    from cje.cli import main
    cfg = make_config(fault_server.url, chat_template="llama3")
    cfg["policies"]["../../ESCAPED"] = dict(cfg["policies"]["base"])
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    resp = tmp_path / "base.jsonl"
    resp.write_text(json.dumps({"prompt_id": "a", "prompt": "q", "response": "r", "draw_idx": 0,
                                "status": "ok"}) + "\n")
    out = tmp_path / "a" / "b" / "out"
    rc = main(["logprobs", "--config", str(tmp_path / "cfg.yaml"), "--responses", str(resp),
               "--policies", "../../ESCAPED", "--output-dir", str(out)])
    assert rc == 2
    assert not list(tmp_path.rglob("ESCAPED*")) and fault_server.total() == 0
