"""Side cache: batches, torn lines, stale settings, error retry, atomic publish."""

from __future__ import annotations

import json

import pytest

from cje.errors import InputError
from cje.llm.cache import SideCache, publish_jsonl, read_jsonl

KEY = ("prompt_id", "draw_idx")


def rec(pid, status="ok", draw=0, **kw):
    return {"prompt_id": pid, "draw_idx": draw, "status": status, **kw}


def test_records_reach_disk_per_batch(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = SideCache(path, KEY, batch_size=3)
    cache.add(rec("a"))
    cache.add(rec("b"))
    assert not path.exists()  # buffered until the batch is full
    cache.add(rec("c"))
    assert len(path.read_text().splitlines()) == 3
    cache.add(rec("d"))
    cache.flush()
    assert len(path.read_text().splitlines()) == 4


def test_torn_last_line_is_dropped_and_truncated(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(rec("a")) + "\n" + json.dumps(rec("b")) + "\n"
                    + '{"prompt_id": "c", "draw_i')
    cache = SideCache(path, KEY, batch_size=1)
    assert cache.is_done(("a", 0)) and cache.is_done(("b", 0)) and not cache.is_done(("c", 0))
    cache.add(rec("c"))
    lines = path.read_text().splitlines()
    assert [json.loads(s)["prompt_id"] for s in lines] == ["a", "b", "c"]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(rec("a")))
    cache = SideCache(path, KEY, batch_size=1)
    cache.add(rec("b"))
    assert [json.loads(s)["prompt_id"] for s in path.read_text().splitlines()] == ["a", "b"]


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(rec("a")) + "\nnot json\n" + json.dumps(rec("b")) + "\n")
    with pytest.raises(InputError, match=r"c\.jsonl:2"):
        SideCache(path, KEY)


def test_error_records_are_retried_ok_records_are_not(tmp_path):
    path = tmp_path / "c.jsonl"
    with SideCache(path, KEY) as cache:
        cache.add(rec("a"))
        cache.add(rec("b", status="error", error="HTTP 500"))
    again = SideCache(path, KEY)
    assert again.is_done(("a", 0)) and not again.is_done(("b", 0))
    assert SideCache(path, KEY, retry_errors=False).is_done(("b", 0))
    with again:
        again.add(rec("b"))
        again.add(rec("a", status="error"))  # an ok record is never replaced by an error
    final = SideCache(path, KEY)
    assert [r["status"] for r in final.records()] == ["ok", "ok"]


def test_records_from_other_settings_are_ignored(tmp_path):
    path = tmp_path / "c.jsonl"
    with SideCache(path, KEY, fingerprint="old") as cache:
        cache.add(rec("a"))
    fresh = SideCache(path, KEY, fingerprint="new")
    assert not fresh.is_done(("a", 0)) and fresh.n_stale == 1
    assert SideCache(path, KEY, fingerprint="old").is_done(("a", 0))
    assert "cache_fingerprint" not in SideCache(path, KEY, fingerprint="old").records()[0]


def test_publish_is_sorted_deduplicated_and_leaves_no_temp(tmp_path):
    out = tmp_path / "out.jsonl"
    rows = [rec("b"), rec("a", draw=1), rec("a"), rec("b", status="error"), rec("a", draw=1)]
    assert publish_jsonl(out, rows, KEY) == 3
    got = read_jsonl(out)
    assert [(r["prompt_id"], r["draw_idx"]) for r in got] == [("a", 0), ("a", 1), ("b", 0)]
    assert got[2]["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_read_jsonl_names_missing_field(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt_id": "a"}\n{"prompt": "b"}\n')
    with pytest.raises(InputError, match=r"x\.jsonl:2, field 'prompt_id'"):
        read_jsonl(path, required=("prompt_id",))
