"""The per-request, content-addressed API cache (issue 11.4), against the fault server.

Each test counts what reached the server: answered requests are never sent again,
whatever the sharding, the prompt set or the stage."""

from __future__ import annotations

import json
import multiprocessing
import os

from cje.llm.stages.generate import generate_responses
from cje.llm.stages.judge import score_responses
from cje.llm.client.cache import RequestCache, provider_identity, request_key
from cje.llm.config import provider_config
from cje.llm.stages.io import read_jsonl
from llm_testlib import make_config, write_prompts


def test_key_depends_on_the_request_not_on_where_the_row_sits(fault_server):
    prov = provider_config(make_config(fault_server.url), "fault")
    ident = provider_identity(prov)
    req = {"model": "m", "prompt": "hi", "max_tokens": 4, "temperature": 1.0}
    k = request_key(ident, "completions", req)
    assert k == request_key(ident, "completions", dict(reversed(list(req.items()))))
    assert k != request_key(ident, "completions", {**req, "temperature": 0.5})
    assert k != request_key(ident, "completions", {**req, "extra_body": {"seed": 1}})
    assert k != request_key(ident, "chat", req)
    assert k != request_key(ident, "completions", req, sample=["p", 1])
    other = provider_identity(prov.__class__(name="renamed", base_url=prov.base_url))
    assert request_key(other, "completions", req) == k  # the name does not change answers
    moved = provider_identity(prov.__class__(name="fault", base_url="http://127.0.0.1:1/v1"))
    assert request_key(moved, "completions", req) != k


def test_adding_prompts_and_resharding_send_only_new_requests(fault_server, fake_key, tmp_path):
    cfg = make_config(fault_server.url)
    rc = str(tmp_path / "requests")
    write_prompts(tmp_path / "p10.jsonl", 10)
    for i in range(2):  # 2 shards of 10 prompts, 2 draws each
        generate_responses(cfg, "base", str(tmp_path / "p10.jsonl"), str(tmp_path / f"a{i}.jsonl"),
                           draws_per_prompt=2, shard=i, num_shards=2, request_cache=rc,
                           api_log=None)
    assert fault_server.rows_total() == 20
    write_prompts(tmp_path / "p13.jsonl", 13)  # 3 more prompts, now 3 shards
    for i in range(3):
        generate_responses(cfg, "base", str(tmp_path / "p13.jsonl"), str(tmp_path / f"b{i}.jsonl"),
                           draws_per_prompt=2, shard=i, num_shards=3, request_cache=rc,
                           api_log=None)
    assert fault_server.rows_total() == 26  # only the 3 new prompts x 2 draws were sent
    rows = [r for i in range(3) for r in read_jsonl(tmp_path / f"b{i}.jsonl")]
    assert len(rows) == 26 and all(r["status"] == "ok" for r in rows)
    # draws of one prompt are independent samples: two distinct cache entries
    assert len({(r["prompt_id"], r["draw_idx"]) for r in rows}) == 26
    # judge and oracle share the cache too; the oracle share changing costs only new rows
    resp = tmp_path / "resp.jsonl"
    resp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = fault_server.rows_total()
    score_responses(cfg, "judge", str(resp), str(tmp_path / "j.jsonl"), request_cache=rc,
                    api_log=None)
    # the fault server's chat answer depends on the user text only, so both draws of a
    # prompt got the same response: 13 distinct judge requests, each sent once
    assert fault_server.rows_total() - before == 13
    before = fault_server.rows_total()
    score_responses(cfg, "judge", str(resp), str(tmp_path / "j2.jsonl"), shard=1, num_shards=4,
                    request_cache=rc, api_log=None)
    assert fault_server.rows_total() == before
    # the preflight was sent once per capability for all 5 generate and 2 judge jobs:
    # chat (generate), chat + JSON mode (judge); later jobs found them in the cache
    assert fault_server.preflight_total() == 3


def test_oracle_subset_is_stable_when_rows_are_added():
    from cje.llm.stages.judge import oracle_selection
    old = [(f"p{i:04d}", 0) for i in range(1000)]
    new = old + [(f"n{i:04d}", 0) for i in range(100)]
    a, b = oracle_selection(old, 0.1, 7), oracle_selection(new, 0.1, 7)
    assert abs(len(a) - 100) <= 4 * (1000 * 0.1 * 0.9) ** 0.5  # binomial(1000, 0.1), 4 sd
    assert b & set(old) == a  # old rows keep their status: only new rows are asked about
    assert oracle_selection(old, 0.1, 8) != a
    assert oracle_selection(old, 0.0, 7) == set() and oracle_selection(old, 1.0, 7) == set(old)


def _writer(root, key, n):
    cache = RequestCache(root)
    for _ in range(n):
        cache.put_ok(key, {"id": "x", "choices": [], "pid": os.getpid()})


def test_concurrent_writers_of_one_key_never_leave_a_torn_entry(tmp_path):
    root, key = tmp_path / "rc", "ab" + "0" * 62
    procs = [multiprocessing.Process(target=_writer, args=(root, key, 50)) for _ in range(4)]
    for p in procs:
        p.start()
    reader = RequestCache(root)
    seen = 0
    while any(p.is_alive() for p in procs):
        e = reader.get(key)
        seen += e is not None
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert reader.unreadable == 0 and reader.get(key)["status"] == "ok"
    assert [p.name for p in (root / "ab").iterdir()] == [f"{key}.json"]  # no temporaries left


def test_an_unreadable_entry_is_a_miss_and_is_replaced(tmp_path, fault_server, fake_key):
    cfg = make_config(fault_server.url)
    rc = tmp_path / "requests"
    write_prompts(tmp_path / "p.jsonl", 2)
    generate_responses(cfg, "base", str(tmp_path / "p.jsonl"), str(tmp_path / "o.jsonl"),
                       request_cache=str(rc), api_log=None)
    victim = sorted(rc.glob("*/*.json"))[0]
    victim.write_bytes(b"")  # what a power loss before the data reached the disk leaves
    generate_responses(cfg, "base", str(tmp_path / "p.jsonl"), str(tmp_path / "o.jsonl"),
                       request_cache=str(rc), api_log=None)
    assert fault_server.total() == 4  # 2 rows + the preflight probe, and the damaged entry's request once more
    assert json.loads(victim.read_bytes())["status"] == "ok"


def test_failed_calls_are_asked_again_unless_told_not_to(fault_server, fake_key, tmp_path):
    from fault_server import Rule
    cfg = make_config(fault_server.url, max_retries=0)
    rc = str(tmp_path / "requests")
    write_prompts(tmp_path / "p.jsonl", 3)
    fault_server.set_rules([Rule("500", match="q001")])
    run = lambda **kw: generate_responses(cfg, "base", str(tmp_path / "p.jsonl"),  # noqa: E731
                                          str(tmp_path / "o.jsonl"), request_cache=rc,
                                          api_log=None, **kw)
    assert run()["error"] == 1 and fault_server.rows_total() == 3
    assert run(retry_errors=False)["error"] == 1 and fault_server.rows_total() == 3
    fault_server.set_rules([])
    assert run()["error"] == 0 and fault_server.rows_total() == 4
    assert fault_server.preflight_total() == 1  # the passed check came from the cache after
