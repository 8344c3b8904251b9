"""The prompts stage: Arena filters on a local file in the chatbot-arena format,
plain prompt files, seeded subsets, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from cje.errors import InputError
from cje.llm.stages.io import read_jsonl
from cje.llm.stages.prompts import make_prompts, select_shard

ARENA = Path(__file__).parent / "data" / "arena_conversations_sample.jsonl"
REPO = Path(__file__).resolve().parents[2]


def test_arena_filters(tmp_path):
    out = tmp_path / "prompts.jsonl"
    counts = make_prompts(str(ARENA), str(out))
    rows = read_jsonl(out)
    assert counts == {"rows": 11, "not_english": 2, "moderation_flagged": 1, "no_user_turn": 0,
                      "duplicates": 1, "kept": 7, "written": 7}
    by_id = {r["prompt_id"]: r["prompt"] for r in rows}
    assert by_id["arena_q01"] == "What is the capital of Italy?"  # first occurrence kept
    assert "arena_q05" not in by_id                                 # its exact duplicate
    assert "arena_q03" not in by_id and "arena_q07" not in by_id   # not English
    assert "arena_q04" not in by_id                                 # moderation-flagged
    assert by_id["arena_q02"] == "Explain recursion with an example."  # first user turn only
    assert by_id["arena_q11"] == "Name a green vegetable."          # first *user* turn
    assert [r["prompt_id"] for r in rows] == sorted(by_id)


def test_seeded_subset_is_reproducible_and_seed_dependent(tmp_path):
    src = str(REPO / "data" / "default_prompts.jsonl")
    a, b, c = (tmp_path / f"{n}.jsonl" for n in "abc")
    make_prompts(src, str(a), n_samples=10, seed=3)
    make_prompts(src, str(b), n_samples=10, seed=3)
    make_prompts(src, str(c), n_samples=10, seed=4)
    ids = lambda p: [r["prompt_id"] for r in read_jsonl(p)]  # noqa: E731
    assert ids(a) == ids(b) and len(ids(a)) == 10 and ids(a) != ids(c)
    assert set(ids(a)) <= {r["prompt_id"] for r in read_jsonl(src)}


def test_default_prompt_set_is_valid():
    rows = read_jsonl(REPO / "data" / "default_prompts.jsonl", required=("prompt_id", "prompt"))
    assert len(rows) >= 60
    assert len({r["prompt_id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)


def test_missing_prompt_ids_are_derived_stably(tmp_path):
    src = tmp_path / "src.jsonl"
    src.write_text('{"prompt": "hello"}\n{"prompt": "world"}\n')
    make_prompts(str(src), str(tmp_path / "a.jsonl"))
    make_prompts(str(src), str(tmp_path / "b.jsonl"))
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert a == b and all(r["prompt_id"].startswith("p_") for r in a)


def test_bad_line_is_named(tmp_path):
    src = tmp_path / "src.jsonl"
    src.write_text('{"prompt_id": "a", "prompt": "x"}\n{"prompt_id": "b", "prompt": \n')
    with pytest.raises(InputError, match=r"src\.jsonl:2"):
        make_prompts(str(src), str(tmp_path / "out.jsonl"))


def test_duplicate_prompt_id_is_an_error(tmp_path):
    src = tmp_path / "src.jsonl"
    src.write_text('{"prompt_id": "a", "prompt": "x"}\n{"prompt_id": "a", "prompt": "y"}\n')
    with pytest.raises(InputError, match="occurs more than once"):
        make_prompts(str(src), str(tmp_path / "out.jsonl"))


def test_shards_partition_the_prompts():
    ids = [f"p{i}" for i in range(23)]
    parts = [select_shard(ids, i, 4) for i in range(4)]
    assert set().union(*parts) == set(ids)
    assert sum(len(p) for p in parts) == 23
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_dataset_name_without_datasets_package_is_a_clear_config_error(tmp_path, monkeypatch):
    import sys

    from cje.errors import ConfigError
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(ConfigError, match="needs the 'datasets' package"):
        make_prompts("agie-ai/lmsys-chatbot_arena_conversations", str(tmp_path / "o.jsonl"))


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: prompt source file does not exist"):
        make_prompts(str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl"))
