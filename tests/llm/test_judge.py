"""Judge and oracle stages: the three methods, unparseable answers, oracle subsets."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from cje.cli import main as cli_main
from cje.llm.stages.io import read_jsonl
from cje.llm.client.http import MalformedResponse
from cje.llm.stages.judge import load_rubric, parse_score, render_rubric, score_responses, \
    yes_probability
from llm_testlib import RUBRICS, make_config, write_config
from fault_server import Rule, score_of


def write_responses(path, n, policy="base", failed=()):
    with open(path, "w") as fh:
        for i in range(n):
            pid = f"r{i:03d}"
            ok = pid not in failed
            fh.write(json.dumps({
                "prompt_id": pid, "prompt": f"question {i}?", "policy": policy, "draw_idx": 0,
                "response": f"answer {i}." if ok else None, "status": "ok" if ok else "error",
                "error": None if ok else "HTTP 500: boom", "model": "m", "usage": {}}) + "\n")
    return path


@pytest.mark.parametrize("answer,score", [
    ('{"score": 87}', 87.0), ("Score: 42", 42.0), ("I'd give it a rating of 73.", 73.0),
    ("**Score:** 9/10 ... final score: 64", 64.0), ("55/100", 55.0), ("80 out of 100", 80.0),
    ("  91 ", 91.0), ("100", 100.0), ("0", 0.0)])
def test_parse_score_accepts_common_formats(answer, score):
    assert parse_score(answer) == score


@pytest.mark.parametrize("answer", ["The answer is good.", "Score: 150", "", "between 3 and 5"])
def test_parse_score_rejects_answers_without_a_valid_score(answer):
    with pytest.raises(MalformedResponse):
        parse_score(answer)


def test_yes_probability_sums_token_variants():
    p = yes_probability({" Yes": math.log(0.3), "Yes": math.log(0.1), " No": math.log(0.2),
                         " Maybe": math.log(0.4)})
    assert p == pytest.approx(0.4 / 0.6)
    # " No" not listed: its probability is at most the smallest listed one (0.05)
    p = yes_probability({" Yes": math.log(0.9), " The": math.log(0.05)})
    assert p == pytest.approx(0.9 / 0.95)
    with pytest.raises(MalformedResponse):
        yes_probability({" Maybe": -0.1})


@pytest.mark.parametrize("method", ["structured", "parse", "yes_no_logprob"])
def test_judge_methods_store_scores_in_unit_interval(fault_server, fake_key, tmp_path, method):
    inp = write_responses(tmp_path / "base.jsonl", 4)
    out = tmp_path / "judge.jsonl"
    cfg = make_config(fault_server.url, judge_method=method)
    score_responses(cfg, "judge", str(inp), str(out), api_log=None)
    rows = read_jsonl(out)
    variants, rubric_hash = load_rubric(cfg["judge"]["rubric_file"])
    text = open(cfg["judge"]["rubric_file"]).read()
    assert rubric_hash == hashlib.sha256(text.encode()).hexdigest()
    for r in rows:
        i = int(r["prompt_id"][1:])
        sent = render_rubric(variants[0], f"question {i}?", f"answer {i}.")
        expected = score_of(sent) / 100
        if method == "yes_no_logprob":
            expected = min(0.99, max(0.01, expected))
        assert r["status"] == "ok" and r["judge_score"] == pytest.approx(expected)
        assert r["model"] == "judge-model" and r["rubric_hash"] == rubric_hash and r["raw"]
    body = fault_server.row_log()[0]["body"]
    if method == "structured":
        assert body["response_format"]["type"] == "json_schema"
    if method == "yes_no_logprob":
        assert fault_server.row_log()[0]["path"].endswith("/v1/completions")
        assert body["max_tokens"] == 1 and body["logprobs"] >= 2


@pytest.mark.parametrize("method", ["parse", "yes_no_logprob"])
def test_unparseable_answers_are_retried_then_stored_as_errors(fault_server, fake_key,
                                                               tmp_path, method):
    inp = write_responses(tmp_path / "base.jsonl", 3)
    out = tmp_path / "judge.jsonl"
    fault_server.set_rules([Rule("nonnumeric", match="answer 1.")])
    cfg = make_config(fault_server.url, judge_method=method)  # parse_retries = 1
    score_responses(cfg, "judge", str(inp), str(out), api_log=None)
    rows = {r["prompt_id"]: r for r in read_jsonl(out)}
    bad = rows["r001"]
    assert bad["status"] == "error" and bad["judge_score"] is None
    assert "malformed response" in bad["error"]
    assert fault_server.count_containing("answer 1.") == 2  # first try + 1 parse retry
    assert rows["r000"]["status"] == rows["r002"]["status"] == "ok"


def test_failed_generations_are_not_scored(fault_server, fake_key, tmp_path):
    inp = write_responses(tmp_path / "base.jsonl", 3, failed=("r001",))
    out = tmp_path / "judge.jsonl"
    score_responses(make_config(fault_server.url), "judge", str(inp), str(out), api_log=None)
    rows = {r["prompt_id"]: r for r in read_jsonl(out)}
    assert rows["r001"]["status"] == "error" and "response unavailable" in rows["r001"]["error"]
    assert fault_server.rows_total() == 2


def test_oracle_labels_a_seeded_subset_averaging_rubric_variants(fault_server, fake_key,
                                                                 tmp_path):
    inp = write_responses(tmp_path / "base.jsonl", 10)
    cfg = make_config(fault_server.url, n_rubric_samples=2)
    cfg_path = write_config(tmp_path / "cfg.yaml", cfg)
    outs = []
    for shard in range(2):  # two shards must agree on the selection
        out = tmp_path / f"o{shard}.jsonl"
        assert cli_main(["oracle", "--config", str(cfg_path), "--input", str(inp),
                         "--output", str(out), "--coverage", "0.5", "--seed", "3",
                         "--shard", str(shard), "--num-shards", "2",
                         "--api-log", str(tmp_path / "api.log")]) == 0
        outs.append(out)
    assert cli_main(["merge", "--inputs", *map(str, outs), "--output",
                     str(tmp_path / "oracle.jsonl")]) == 0
    rows = read_jsonl(tmp_path / "oracle.jsonl")
    sel = [r for r in rows if r["selected"]]
    from cje.llm.stages.judge import oracle_selection
    expected = oracle_selection([(r["prompt_id"], 0) for r in rows], 0.5, 3)
    assert len(rows) == 10 and {(r["prompt_id"], 0) for r in sel} == expected and sel
    assert fault_server.rows_total() == len(sel) * 2  # n_rubric_samples calls per selected row
    assert fault_server.preflight_total() == 2  # chat + JSON mode, once: the 2nd shard's is cached
    variants, _ = load_rubric(str(RUBRICS / "oracle_score.txt"))
    for r in sel:
        i = int(r["prompt_id"][1:])
        exp = sum(score_of(render_rubric(v, f"question {i}?", f"answer {i}.")) / 100
                  for v in variants[:2]) / 2
        assert r["status"] == "ok" and r["oracle_label"] == pytest.approx(exp)
        assert len(r["raw"]) == 2
    for r in rows:
        if not r["selected"]:
            assert r["oracle_label"] is None and r["status"] == "not_selected"
    # same seed, single shard: the same subset
    score_responses(cfg, "oracle", str(inp), str(tmp_path / "single.jsonl"), coverage=0.5,
                    seed=3, api_log=None)
    single = {r["prompt_id"] for r in read_jsonl(tmp_path / "single.jsonl") if r["selected"]}
    assert single == {r["prompt_id"] for r in sel}


def test_score_method_with_a_yes_no_rubric_is_refused_before_any_call(fault_server, fake_key,
                                                                     tmp_path):
    from cje.errors import ConfigError
    inp = write_responses(tmp_path / "base.jsonl", 2)
    cfg = make_config(fault_server.url, judge_method="structured")
    cfg["judge"]["rubric_file"] = str(RUBRICS / "judge.txt")  # the yes/no rubric
    with pytest.raises(ConfigError, match="never mentions 100"):
        score_responses(cfg, "judge", str(inp), str(tmp_path / "j.jsonl"), api_log=None)
    assert fault_server.total() == 0


def test_shipped_rubrics_load():
    for name, n in (("judge.txt", 1), ("oracle.txt", 3), ("judge_score.txt", 1),
                    ("oracle_score.txt", 2)):
        variants, h = load_rubric(str(RUBRICS / name))
        assert len(variants) == n and len(h) == 64
        assert all("{prompt}" in v and "{response}" in v for v in variants)
