"""The strict JSONL checks are paid once per file version (cje.data.checked), and never trusted stale."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cje.data import checked
from cje.data.jsonl import open_jsonl, read_jsonl_frame
from cje.errors import InputError


def _verdicts() -> list[Path]:
    return sorted(checked.cache_dir().glob("*.json"))


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CJE_CACHE_DIR", str(folder))
    return folder


def _settle() -> None:
    """Let a written file's change time age past SETTLE_SECONDS (a ctime cannot be set back)."""
    time.sleep(checked.SETTLE_SECONDS + 0.2)


def test_settled_file_is_checked_once(arena_logged, cache):
    first = open_jsonl(arena_logged)
    assert first.source is not None  # checked in full: the bytes were read
    assert len(_verdicts()) == 1
    again = open_jsonl(arena_logged)
    assert again.source is None and again.checked == first.checked  # the verdict, not the checks
    columns = ["metadata", "judge_score", "target_policy_logprobs"]
    assert again.read(columns, lengths=["response"]).equals(first.read(columns, lengths=["response"]))
    assert again.read().equals(read_jsonl_frame(arena_logged))


def test_fresh_file_is_not_recorded(tmp_path, cache):
    path = tmp_path / "new.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    assert read_jsonl_frame(path).height == 2
    assert not cache.exists() or not _verdicts()  # too recent: a write in the same clock tick could hide


def test_changed_file_is_checked_again(tmp_path, cache):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    _settle()
    assert read_jsonl_frame(path).height == 2
    assert len(_verdicts()) == 1
    with open(path, "a") as handle:  # same path, new content: a new change time
        handle.write('{"a": 3, "a": 4}\n')
    with pytest.raises(InputError, match=r"rows.jsonl:3, field 'a': key 'a' appears twice"):
        read_jsonl_frame(path)


def test_verdict_is_per_file_version_not_per_path(tmp_path, cache):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n')
    _settle()
    open_jsonl(path)
    replacement = tmp_path / "other.jsonl"
    replacement.write_text('{"a": "x"}\n{"a": "y"}\n')
    os.replace(replacement, path)  # a new inode under the old name
    assert read_jsonl_frame(path)["a"].to_list() == ["x", "y"]


def test_cache_off_and_unreadable_cache(arena_logged, tmp_path, monkeypatch):
    monkeypatch.setenv("CJE_CACHE_DIR", "")
    assert checked.cache_dir() is None
    assert open_jsonl(arena_logged).source is not None
    assert open_jsonl(arena_logged).source is not None  # nothing kept: checked every time
    monkeypatch.setenv("CJE_CACHE_DIR", str(tmp_path / "c"))
    open_jsonl(arena_logged)
    (verdict,) = _verdicts()
    verdict.write_text(json.dumps({"n_rows": "many"}))  # damaged: ignored, the checks run again
    assert open_jsonl(arena_logged).source is not None
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("CJE_CACHE_DIR", str(blocked))
    assert open_jsonl(arena_logged).read(["judge_score"]).height == 1000  # unwritable cache: still reads
