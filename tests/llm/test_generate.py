"""The generate stage against the fault server: faults, resume, sampling requests, 401."""

from __future__ import annotations

import pytest

from cje.cli import main as cli_main
from cje.llm.stages.io import read_jsonl
from cje.llm.stages.generate import generate_responses
from cje.llm.templates import render_prompt
from llm_testlib import make_config, write_config, write_prompts
from fault_server import Rule


def test_faults_are_retried_or_recorded_and_rerun_repays_only_errors(fault_server, fake_key,
                                                                     tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl", 12)
    out = tmp_path / "base.jsonl"
    fault_server.set_rules([
        Rule("429", match="q001", times=2), Rule("500", match="q002"),
        Rule("drop", match="q003", times=1), Rule("malformed", match="q004", times=1),
        Rule("slow", match="q005", times=1, slow_s=1.0)])
    cfg = make_config(fault_server.url, timeout_s=0.3, max_retries=2)
    rc = tmp_path / "requests"
    counts = generate_responses(cfg, "base", str(prompts), str(out), api_log=None,
                                request_cache=str(rc))
    rows = read_jsonl(out)
    assert [r["prompt_id"] for r in rows] == [f"q{i:03d}" for i in range(12)]
    bad = [r for r in rows if r["status"] != "ok"]
    assert [r["prompt_id"] for r in bad] == ["q002"]
    assert bad[0]["response"] is None and "HTTP 500" in bad[0]["error"]
    assert all(r["response"] and r["policy"] == "base" and r["draw_idx"] == 0
               and r["usage"]["completion_tokens"] > 0 for r in rows if r["status"] == "ok")
    assert counts["ok"] == 11 and counts["error"] == 1
    before = fault_server.counts()

    fault_server.set_rules([])  # the provider recovered; rerun
    counts = generate_responses(cfg, "base", str(prompts), str(out), api_log=None,
                                request_cache=str(rc))
    assert counts["ok"] == 12
    after = fault_server.counts()
    changed = {t for t in after if after[t] != before.get(t, 0)}
    assert [t[:4] for t in changed] == ["q002"]  # finished rows were not requested again
    assert all(r["status"] == "ok" for r in read_jsonl(out))


def test_draws_and_shards_cover_every_key_once(fault_server, fake_key, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl", 7)
    cfg = make_config(fault_server.url)
    for i in range(3):
        generate_responses(cfg, "short", str(prompts), str(tmp_path / f"s{i}.jsonl"),
                           draws_per_prompt=2, shard=i, num_shards=3, api_log=None)
    assert cli_main(["merge", "--inputs", *[str(tmp_path / f"s{i}.jsonl") for i in range(3)],
                     "--output", str(tmp_path / "short.jsonl")]) == 0
    keys = [(r["prompt_id"], r["draw_idx"]) for r in read_jsonl(tmp_path / "short.jsonl")]
    assert keys == sorted((f"q{i:03d}", k) for i in range(7) for k in range(2))
    assert fault_server.rows_total() == 14
    assert fault_server.preflight_total() == 3  # each job checked the endpoint (no cache)


def test_templated_local_policy_uses_completions_with_untruncated_sampling(fault_server,
                                                                            fake_key, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    cfg = make_config(fault_server.url, chat_template="gemma")
    # kind local with a base_url: use an already running server instead of starting one
    cfg["providers"]["fault"]["kind"] = "local"
    cfg["policies"]["base"]["extra_body"] = {"top_k": 40, "seed": 5}  # top_k cannot win
    generate_responses(cfg, "base", str(prompts), str(tmp_path / "out.jsonl"), api_log=None)
    req = fault_server.row_log()[0]
    assert req["path"].endswith("/v1/completions")
    assert req["text"] == render_prompt("gemma", "You are a helpful assistant.",
                                        "q000: say something about 0") or \
        req["text"] == render_prompt("gemma", "You are a helpful assistant.",
                                     "q001: say something about 1")
    body = req["body"]
    assert body["stop"] == ["<end_of_turn>"] and body["top_p"] == 1.0
    assert body["temperature"] == 1.0 and body["max_tokens"] == 16
    assert (body["top_k"], body["min_p"], body["repeat_penalty"]) == (0, 0.0, 1.0)
    assert body["seed"] == 5


def test_hosted_untemplated_policy_uses_chat_with_system_prompt(fault_server, fake_key,
                                                                tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl", 1)
    cfg = make_config(fault_server.url)
    generate_responses(cfg, "short", str(prompts), str(tmp_path / "out.jsonl"), api_log=None)
    body = fault_server.row_log()[0]["body"]
    assert fault_server.row_log()[0]["path"].endswith("/v1/chat/completions")
    assert body["messages"] == [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "q000: say something about 0"}]
    assert "top_k" not in body  # no llama.cpp-only fields sent to a hosted API


def test_401_stops_the_stage_at_once_with_the_provider_message(fault_server, fake_key,
                                                               tmp_path, capsys):
    prompts = write_prompts(tmp_path / "prompts.jsonl", 30)
    fault_server.set_rules([Rule("401", message="Incorrect API key provided: sk-cje...")])
    cfg = write_config(tmp_path / "cfg.yaml", make_config(fault_server.url, max_concurrency=4))
    rc = cli_main(["generate", "--config", str(cfg), "--policy", "base", "--prompts",
                   str(prompts), "--output", str(tmp_path / "out.jsonl"),
                   "--api-log", str(tmp_path / "api.log")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "HTTP 401: Incorrect API key provided: sk-cje..." in err
    assert fault_server.total() <= 4  # only the requests already in flight
    assert not (tmp_path / "out.jsonl").exists()


def test_unknown_policy_is_a_config_error(fault_server, tmp_path, capsys):
    cfg = write_config(tmp_path / "cfg.yaml", make_config(fault_server.url))
    prompts = write_prompts(tmp_path / "prompts.jsonl", 1)
    rc = cli_main(["generate", "--config", str(cfg), "--policy", "nope", "--prompts",
                   str(prompts), "--output", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "policy 'nope' is not defined" in capsys.readouterr().err


def test_missing_key_env_var_is_named(fault_server, tmp_path, monkeypatch):
    monkeypatch.delenv("CJE_TEST_API_KEY", raising=False)
    prompts = write_prompts(tmp_path / "prompts.jsonl", 1)
    from cje.errors import ConfigError
    with pytest.raises(ConfigError, match="CJE_TEST_API_KEY is not set"):
        generate_responses(make_config(fault_server.url), "base", str(prompts),
                           str(tmp_path / "o.jsonl"), api_log=None)


def test_sample_seed_is_stable_and_distinct_per_draw():
    from cje.llm.stages.generate import sample_seed

    assert sample_seed("base", "p1", 0) == sample_seed("base", "p1", 0)
    seeds = {sample_seed(p, i, k) for p in ("base", "clone") for i in ("p1", "p2") for k in range(3)}
    assert len(seeds) == 12 and all(0 <= s < 2**31 for s in seeds)
