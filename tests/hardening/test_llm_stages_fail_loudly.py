"""Issue 19, item 2: LLM stages fail loudly.

Against the fault server on 127.0.0.1 (tests/servers/fault_server.py), through the real
``cje`` command (in this process; ``hardlib.run_cli``):

- a stage in which more than ``execution.max_failed_share`` (default 0.5) of the rows it
  asked about failed, so also one whose rows all failed, exits 2 with one line naming the
  stage, the count and the first error, and writes no output;
- a key that cannot go into an HTTP header (a trailing newline, spaces, a curly quote)
  is a config error naming the variable before the first request, never shown;
- OpenAI's ``insufficient_quota`` (a 429 that never clears) stops the stage at once.
"""

from __future__ import annotations

import time

import jsonschema
import pytest
import yaml
from hardlib import run_cli
from llm_hardlib import (
    KEY,
    KEY_ENV,
    REPO,
    FaultServer,
    Rule,
    api_flags,
    config,
    fragments,
    one_error,
    write_config,
    write_prompts,
    write_responses,
)

from cje.llm.client.retry import classify_status
from cje.llm.stages.io import read_jsonl
from cje.llm.stages.judge import oracle_selection

NOT_WRITTEN = ("(output not written; answers received are kept in the request cache, every "
               "error is in the call log {log})")
FAULT_500 = "HTTP 500: internal error (fault injected) (gave up after 1 retries)"


@pytest.fixture
def srv():
    with FaultServer() as server:
        yield server


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def _generate(tmp_path, srv, capsys, n=12, **execution):
    """``cje generate`` of ``n`` prompts (the request cache and call log under ``tmp_path``)."""
    cfg = write_config(tmp_path / "config.yaml", config(srv.url, **execution))
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    out = tmp_path / "base.jsonl"
    code, _, err = run_cli(["generate", "--config", cfg, "--policy", "base", "--prompts", prompts,
                            "--output", out, *api_flags(tmp_path)], capsys)
    return code, err, out


# --- a stage whose rows failed ------------------------------------------------------------

def test_generate_whose_rows_all_fail_exits_2_naming_stage_count_and_first_error(tmp_path, srv, key,
                                                                               capsys):
    srv.set_rules([Rule("500", match="q0")])  # the rows (the preflight probe passes)
    code, err, out = _generate(tmp_path, srv, capsys)
    line = one_error(code, err, "generate")
    assert line == (f"stage generate:base: all 12 rows failed; first error: [q000] {FAULT_500} "
                    + NOT_WRITTEN.format(log=tmp_path / "api_calls.log"))
    assert not out.exists()


def test_more_than_max_failed_share_fails_and_the_share_is_a_config_key(tmp_path, srv, key, capsys):
    srv.set_rules([Rule("500", match=f"q{i:03d}:") for i in (3, 5, 6, 7, 8, 9, 10)])  # 7 of 12
    code, err, out = _generate(tmp_path, srv, capsys)
    assert one_error(code, err, "generate").startswith(
        "stage generate:base: 7 of 12 rows failed, more than execution.max_failed_share = 0.5 "
        f"allows; first error: [q003] {FAULT_500} (output not written;")
    assert not out.exists()

    code, err, out = _generate(tmp_path, srv, capsys, max_failed_share=0.75)  # 7/12 = 0.58
    assert code == 0, err
    assert [r["prompt_id"] for r in read_jsonl(out) if r["status"] == "error"] == \
        [f"q{i:03d}" for i in (3, 5, 6, 7, 8, 9, 10)]


def test_a_share_at_the_limit_passes_and_1_turns_the_check_off(tmp_path, srv, key, capsys):
    srv.set_rules([Rule("500", match=f"q{i:03d}:") for i in range(6)])  # 6 of 12: exactly half
    code, err, out = _generate(tmp_path, srv, capsys)
    assert code == 0, err
    assert sum(r["status"] == "error" for r in read_jsonl(out)) == 6

    srv.set_rules([Rule("500", match="q0")])  # the rows (the preflight probe passes)
    (tmp_path / "off").mkdir()  # a new request cache: the answers above are not reused
    code, err, out = _generate(tmp_path / "off", srv, capsys, max_failed_share=1)
    assert code == 0, err
    assert all(r["status"] == "error" for r in read_jsonl(out))


@pytest.mark.parametrize("value", [1.5, -0.1, "half", True])
def test_a_bad_max_failed_share_is_a_config_error_before_any_request(tmp_path, srv, key, capsys, value):
    code, err, out = _generate(tmp_path, srv, capsys, max_failed_share=value)
    assert one_error(code, err, "generate") == (
        f"config key 'execution.max_failed_share': must be a number in [0, 1], got {value!r}")
    assert srv.total() == 0 and not out.exists()


def test_the_workflow_schema_knows_max_failed_share():
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    spec = schema["properties"]["execution"]["properties"]["max_failed_share"]
    assert spec["default"] == 0.5
    validator = jsonschema.Draft202012Validator(schema["properties"]["execution"])
    assert validator.is_valid({"max_failed_share": 0.2})
    assert not validator.is_valid({"max_failed_share": 1.5})
    assert not validator.is_valid({"max_failed_share": "half"})
    assert "`max_failed_share`" in (REPO / "config" / "README.md").read_text()


@pytest.mark.parametrize("role", ["judge", "oracle"])
def test_a_scorer_whose_calls_all_fail_exits_2_and_rows_failed_upstream_do_not_count(
        tmp_path, srv, key, capsys, role):
    cfg = write_config(tmp_path / "config.yaml", config(srv.url))
    responses = write_responses(tmp_path / "base.jsonl", 12, failed=2)
    srv.set_rules([Rule("500", match="q0")])  # the rows (the preflight probe passes)
    out = tmp_path / f"{role}.jsonl"
    code, _, err = run_cli([role, "--input", responses, "--output", out, "--config", cfg,
                            *api_flags(tmp_path)], capsys)
    asked = [f"q{i:03d}" for i in range(10)]  # the 2 failed generations are not asked about
    if role == "oracle":  # nor the rows outside the oracle's subset
        chosen = oracle_selection([(f"q{i:03d}", 0) for i in range(12)], 0.5, 7)
        asked = [p for p in asked if (p, 0) in chosen]
        assert 0 < len(asked) < 10
    assert one_error(code, err, role) == (
        f"stage {role}:base: all {len(asked)} rows failed; first error: [{asked[0]}] {FAULT_500} "
        + NOT_WRITTEN.format(log=tmp_path / "api_calls.log"))
    assert not out.exists()


def test_a_scorer_is_not_blamed_for_rows_the_generation_failed(tmp_path, srv, key, capsys):
    cfg = write_config(tmp_path / "config.yaml", config(srv.url))
    responses = write_responses(tmp_path / "base.jsonl", 4, failed=3)  # 1 row to score, it passes
    out = tmp_path / "judge.jsonl"
    code, _, err = run_cli(["judge", "--input", responses, "--output", out, "--config", cfg,
                            *api_flags(tmp_path)], capsys)
    assert code == 0, err
    assert [r["status"] for r in read_jsonl(out)] == ["ok", "error", "error", "error"]


def test_logprobs_whose_scoring_calls_all_fail_exits_2_but_a_refused_policy_does_not(
        tmp_path, srv, key, capsys):
    cfg = write_config(tmp_path / "config.yaml", config(srv.url))
    responses = write_responses(tmp_path / "base.jsonl", 6)
    srv.set_rules([Rule("500", match="q0", path="/completions")])
    out = tmp_path / "logprobs"
    argv = ["logprobs", "--config", cfg, "--responses", responses, "--output-dir", out,
            *api_flags(tmp_path)]
    code, _, err = run_cli([*argv, "--policies", "tf"], capsys)
    line = one_error(code, err, "logprobs")
    assert line.startswith("stage logprobs:tf: all 6 rows failed; first error: [q000] ")
    assert "HTTP 500: internal error (fault injected)" in line
    assert not (out / "tf.jsonl").exists()
    # `base` samples through chat (chat_template none): it cannot be teacher-forced, its rows
    # are errors without a call, which is the policy's config, not a failed stage
    code, _, err = run_cli([*argv, "--policies", "base"], capsys)
    assert code == 0, err
    assert all(r["status"] == "error" for r in read_jsonl(out / "base.jsonl"))


# --- a malformed key: a config error before the first request --------------------------------

@pytest.mark.parametrize("value, problem", [
    (KEY + "\n", "ends with a newline"),
    (KEY + "\r\n", "ends with a newline"),
    (KEY + "  ", "ends with whitespace"),
    (" " + KEY, "starts with whitespace"),
    (KEY[:9] + " " + KEY[9:], "contains whitespace"),
    (KEY + "\u201d", ("contains the non-ASCII character U+201D (a curly quote, as pasted from "
                      "a document?)")),
    ("\u201c" + KEY + "\u201d", ("contains the non-ASCII character U+201C (a curly quote, as "
                                 "pasted from a document?)")),
    (KEY[:5] + "\u00e9" + KEY[5:], "contains the non-ASCII character U+00E9"),
    (KEY + "\x7f", "contains the control character U+007F"),
])
def test_a_malformed_key_is_a_config_error_before_the_first_request(tmp_path, srv, capsys,
                                                                   monkeypatch, value, problem):
    monkeypatch.setenv(KEY_ENV, value)
    code, err, out = _generate(tmp_path, srv, capsys)
    assert one_error(code, err, "generate") == (
        f"config key 'providers.fault.api_key_env': environment variable {KEY_ENV} (the API key "
        f"of provider 'fault') {problem}: an API key is printable ASCII without spaces; set the "
        "variable again without it (the key is not shown)")
    assert srv.total() == 0 and not out.exists()
    logs = err + "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert not any(f in logs for f in fragments(KEY))


def test_a_well_formed_key_is_sent_as_it_is(tmp_path, srv, key, capsys):
    code, err, out = _generate(tmp_path, srv, capsys, n=2)
    assert code == 0, err
    assert all(r["status"] == "ok" for r in read_jsonl(out))
    assert srv.auth_headers == {f"Bearer {KEY}"}


# --- a used-up quota: fatal at once -----------------------------------------------------------

def test_insufficient_quota_is_classified_fatal_and_a_plain_429_is_not():
    assert classify_status(429, "insufficient_quota") == "fatal"
    assert classify_status(429, "rate_limit_exceeded") == "rate_limited"
    assert classify_status(429) == "rate_limited"


def test_insufficient_quota_stops_the_stage_at_once(tmp_path, srv, key, capsys):
    srv.set_rules([Rule("quota")])  # default rate_limit_budget_s: 1800 s of waiting per call
    t0 = time.monotonic()
    code, err, out = _generate(tmp_path, srv, capsys)
    assert time.monotonic() - t0 < 20
    assert one_error(code, err, "generate") == (
        "provider 'fault' answered HTTP 429: You exceeded your current quota, please check your "
        "plan and billing details. (insufficient_quota: the account's quota or credit is used up, "
        "which waiting does not clear; add credit or raise the limit, then rerun) (stage stopped; "
        "finished answers are kept in the request cache)")
    assert srv.total() <= 4  # the requests in flight at once (max_concurrency), none retried
    assert all(n == 1 for n in srv.counts().values())
    assert not out.exists()
