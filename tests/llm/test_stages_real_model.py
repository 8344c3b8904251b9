"""generate / judge / oracle on the real embedded model (``kind: local``: each stage
starts and stops the llama.cpp server itself), with the shipped rubrics and prompts."""

from __future__ import annotations

import json

import pytest

from cje.llm.stages.io import read_jsonl
from cje.llm.stages.generate import generate_responses
from cje.llm.stages.judge import score_responses
from llm_testlib import REPO

pytestmark = pytest.mark.llm


def _config() -> dict:
    pol = {"provider": "local", "model": "gemma-3-270m", "chat_template": "gemma",
           "system_prompt": "You are a helpful assistant.", "temperature": 1.0,
           "max_tokens": 24}
    # the base model judges on the raw "...Reply:" text; inside a chat turn it answers
    # "Question..." and Yes/No are at best far down its top tokens
    scorer = {"provider": "local", "model": "gemma-3-270m", "chat_template": "none",
              "method": "yes_no_logprob"}
    return {"providers": {"local": {"kind": "local", "n_threads": 1, "max_concurrency": 1,
                                    "timeout_s": 120, "max_retries": 1}},
            "base_policy": "base", "policies": {"base": pol},
            "judge": {**scorer, "rubric_file": str(REPO / "config/rubrics/judge.txt")},
            "oracle": {**scorer, "rubric_file": str(REPO / "config/rubrics/oracle.txt"),
                       "n_rubric_samples": 3, "coverage": 1.0, "seed": 7},
            "execution": {"batch_size": 2}}


def test_local_generate_judge_oracle(tmp_path, monkeypatch):
    prompts = tmp_path / "prompts.jsonl"
    src = read_jsonl(REPO / "data" / "default_prompts.jsonl")[:3]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in src))
    cfg = _config()
    log = tmp_path / "api.log"
    resp = tmp_path / "base.jsonl"
    rc = str(tmp_path / "requests")
    counts = generate_responses(cfg, "base", str(prompts), str(resp), api_log=str(log),
                                request_cache=rc)
    rows = read_jsonl(resp)
    assert counts["ok"] == 3 and [r["status"] for r in rows] == ["ok"] * 3
    for r in rows:  # stopped at the end-of-turn marker, which is not part of the text
        assert isinstance(r["response"], str) and "<end_of_turn>" not in r["response"]
        assert 0 < r["usage"]["completion_tokens"] <= 24
        # what teacher forcing needs: why sampling stopped and the sampled token path
        assert r["finish_reason"] in ("stop", "length")
        assert len(r["token_ids"]) == r["usage"]["completion_tokens"] - (r["finish_reason"] == "stop")

    judge = tmp_path / "judge.jsonl"
    score_responses(cfg, "judge", str(resp), str(judge), api_log=str(log), request_cache=rc)
    oracle = tmp_path / "oracle.jsonl"
    score_responses(cfg, "oracle", str(resp), str(oracle), api_log=str(log), request_cache=rc)
    for path, field in ((judge, "judge_score"), (oracle, "oracle_label")):
        for r in read_jsonl(path):
            assert r["status"] == "ok", r
            assert 0.0 < r[field] < 1.0
    assert all(len(r["raw"]) == 3 for r in read_jsonl(oracle))

    # rerun: every answer comes from the request cache; no call, not even a server start
    import cje.llm.local.server as local_server

    def no_server(*a, **kw):
        raise AssertionError("the local server was started for a fully cached stage")
    monkeypatch.setattr(local_server, "local_server", no_server)
    n_lines = len(log.read_text().splitlines())
    assert generate_responses(cfg, "base", str(prompts), str(resp), api_log=str(log),
                              request_cache=rc)["ok"] == 3
    assert score_responses(cfg, "judge", str(resp), str(judge), api_log=str(log),
                           request_cache=rc)["scored_ok"] == 3
    new = [json.loads(s) for s in log.read_text().splitlines()[n_lines:]]
    assert [r.get("event") for r in new] == ["stage_summary"] * 2  # no call line
    assert all(t["cached"] == t["calls"] for r in new for t in r["totals"])
