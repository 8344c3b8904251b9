"""Dataset assembly end to end through the CLI on the fault server; failures kept as null;
the API key never reaches a file or the console."""

from __future__ import annotations

import json
from pathlib import Path

from cje.cli import main as cli_main
from cje.llm.stages.io import read_jsonl
from llm_testlib import FAKE_KEY, make_config, write_config, write_prompts
from fault_server import Rule


def _write_logprobs(path: Path, prompt_ids, policy, failed=()):
    """Rows in the contract format of ``cje logprobs`` (that stage is tested by its owner)."""
    with open(path, "w") as fh:
        for i, pid in enumerate(prompt_ids):
            bad = pid in failed
            fh.write(json.dumps({"prompt_id": pid, "policy": policy,
                                 "logprob": None if bad else -10.0 - i, "n_tokens": 5,
                                 "method": "offsets", "status": "error" if bad else "ok",
                                 "error": "positive log-prob" if bad else None}) + "\n")


def test_pipeline_to_dataset_keeps_failures_as_null(fault_server, fake_key, tmp_path, capsys):
    d = tmp_path
    prompts = write_prompts(d / "prompts.jsonl", 6)
    fault_server.set_rules([Rule("500", match="q003"),            # base generation fails
                            Rule("401", match="never-matches", message=f"key {FAKE_KEY}")])
    cfg = write_config(d / "cfg.yaml", make_config(fault_server.url, max_retries=1))
    log = str(d / "logs" / "api_calls.log")
    run = lambda *a: cli_main([*a, "--config", str(cfg), "--api-log", log])  # noqa: E731
    for pol in ("base", "short"):
        assert run("generate", "--policy", pol, "--prompts", str(prompts),
                   "--output", str(d / "responses" / f"{pol}.jsonl")) == 0
        assert run("judge", "--input", str(d / "responses" / f"{pol}.jsonl"),
                   "--output", str(d / "judge" / f"{pol}.jsonl")) == 0
        assert run("oracle", "--input", str(d / "responses" / f"{pol}.jsonl"),
                   "--output", str(d / "oracle" / f"{pol}.jsonl"),
                   "--coverage", "0.5" if pol == "base" else "1.0") == 0
    ids = [f"q{i:03d}" for i in range(6)]
    (d / "logprobs").mkdir()
    _write_logprobs(d / "logprobs" / "base.jsonl", ids, "base")
    _write_logprobs(d / "logprobs" / "short.jsonl", ids, "short", failed=("q004",))
    assert cli_main(["dataset", "--config", str(cfg), "--responses-dir", str(d / "responses"),
                     "--logprobs-dir", str(d / "logprobs"), "--judge-dir", str(d / "judge"),
                     "--oracle-dir", str(d / "oracle"), "--output", str(d / "cje_dataset.jsonl"),
                     "--fresh-draws-dir", str(d / "fresh_draws")]) == 0
    captured = capsys.readouterr()

    rows = {r["prompt_id"]: r for r in read_jsonl(d / "cje_dataset.jsonl")}
    assert sorted(rows) == ids
    ok = rows["q000"]
    assert ok["response"] and ok["base_policy_logprob"] == -10.0
    assert ok["target_policy_logprobs"] == {"short": -10.0}
    assert 0.0 <= ok["metadata"]["judge_score"] <= 1.0 and ok["metadata"]["prompt_id"] == "q000"
    assert rows["q004"]["target_policy_logprobs"] == {"short": None}
    assert rows["q004"]["metadata"]["logprob_status"] == {"base": "ok", "short": "error"}
    failed = rows["q003"]
    assert failed["response"] is None and failed["metadata"]["judge_score"] is None
    assert failed["metadata"]["response_status"] == "error"
    labelled = [r for r in rows.values() if r["metadata"]["oracle_label"] is not None]
    from cje.llm.stages.judge import oracle_selection
    chosen = {pid for pid, _ in oracle_selection([(i, 0) for i in ids], 0.5, 7)}
    assert {r["prompt_id"] for r in labelled} == chosen - {"q003"}  # minus a failed generation
    assert "logged: generation error: 1" in captured.err
    assert "logged: logprob short error: 1" in captured.err

    fresh = read_jsonl(d / "fresh_draws" / "short_responses.jsonl")
    assert [r["prompt_id"] for r in fresh] == ids
    assert all(set(r) >= {"prompt_id", "prompt", "response", "draw_idx", "judge_score",
                          "oracle_label"} for r in fresh)
    assert all(r["oracle_label"] is not None for r in fresh if r["prompt_id"] != "q003")
    assert (d / "fresh_draws" / "base_responses.jsonl").exists()

    # the key was used for every request but is written nowhere
    assert fault_server.auth_headers == {f"Bearer {FAKE_KEY}"}
    assert FAKE_KEY not in captured.out + captured.err
    for f in d.rglob("*"):
        if f.is_file():
            assert FAKE_KEY not in f.read_text(errors="replace"), f


def test_dataset_names_a_missing_input_file(tmp_path, capsys):
    cfg = write_config(tmp_path / "cfg.yaml", make_config("http://127.0.0.1:9/v1"))
    for sub in ("responses", "logprobs", "judge", "oracle"):
        (tmp_path / sub).mkdir()
    rc = cli_main(["dataset", "--config", str(cfg), "--responses-dir", str(tmp_path / "responses"),
                   "--logprobs-dir", str(tmp_path / "logprobs"), "--judge-dir",
                   str(tmp_path / "judge"), "--oracle-dir", str(tmp_path / "oracle"),
                   "--output", str(tmp_path / "ds.jsonl"),
                   "--fresh-draws-dir", str(tmp_path / "fresh")])
    assert rc == 2 and "base.jsonl: file does not exist" in capsys.readouterr().err


def _rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _stage_files(d: Path, ids, judge_ids=None) -> None:
    for pol in ("base", "short"):
        _rows(d / "responses" / f"{pol}.jsonl",
              [{"prompt_id": i, "prompt": f"p {i}", "draw_idx": 0, "response": f"r {i}",
                "status": "ok", "policy": pol} for i in ids])
        _rows(d / "judge" / f"{pol}.jsonl",
              [{"prompt_id": i, "draw_idx": 0, "judge_score": 0.5, "status": "ok"}
               for i in (judge_ids or ids)])
        _write_logprobs_dir(d, ids, pol)


def _write_logprobs_dir(d: Path, ids, pol) -> None:
    (d / "logprobs").mkdir(parents=True, exist_ok=True)
    _write_logprobs(d / "logprobs" / f"{pol}.jsonl", ids, pol)


def _assemble(d: Path):
    from cje.llm.stages.dataset import assemble_dataset
    cfg = make_config("http://127.0.0.1:9/v1")
    return assemble_dataset(cfg, str(d / "responses"), str(d / "logprobs"), str(d / "judge"),
                            str(d / "oracle"), str(d / "ds.jsonl"), str(d / "fresh"))


def test_missing_rows_and_missing_oracle_files_are_reported(tmp_path):
    _stage_files(tmp_path, ["a", "b", "c"], judge_ids=["a", "c"])  # no judge row for b
    (tmp_path / "oracle").mkdir()
    summary = _assemble(tmp_path)
    rows = {r["prompt_id"]: r for r in read_jsonl(tmp_path / "ds.jsonl")}
    assert rows["b"]["metadata"]["judge_score"] is None
    assert rows["b"]["metadata"]["judge_status"] == "missing"
    assert rows["a"]["metadata"]["oracle_status"] == "no_oracle_file"
    assert summary["failures"]["logged: judge missing"] == 1
    assert summary["failures"][f"oracle file missing: {tmp_path / 'oracle' / 'base.jsonl'}"] == 1
    assert summary["logged_rows"] == 3 and summary["fresh_draws"] == {"base": 3, "short": 3}


def test_unmerged_shards_and_null_keys_are_named(tmp_path):
    import pytest

    from cje.errors import InputError
    _stage_files(tmp_path, ["a", "b"])
    (tmp_path / "oracle").mkdir()
    judge = tmp_path / "judge" / "base.jsonl"
    judge.write_text(judge.read_text() * 2)
    with pytest.raises(InputError, match=r"base\.jsonl.*duplicate row.*merge shards first"):
        _assemble(tmp_path)
    _rows(judge, [{"prompt_id": "a", "draw_idx": 0, "judge_score": 0.5, "status": "ok"},
                  {"prompt_id": "b", "draw_idx": 0, "judge_score": 0.5, "status": None}])
    with pytest.raises(InputError, match=r"base\.jsonl:2, field 'status'"):
        _assemble(tmp_path)
    _rows(judge, [{"prompt_id": "a", "draw_idx": 0, "status": "ok"}, {"prompt_id": "b"}])
    with pytest.raises(InputError, match=r"base\.jsonl:2, field 'draw_idx'"):
        _assemble(tmp_path)


def _scored_stage_files(d: Path, n: int = 60) -> list[str]:
    """Stage files with varied judge scores, oracle labels on most rows and one failed log-prob."""
    import numpy as np
    rng = np.random.default_rng(5)
    ids = [f"q{i:03d}" for i in range(n)]
    for k, pol in enumerate(("base", "short")):
        _rows(d / "responses" / f"{pol}.jsonl",
              [{"prompt_id": i, "prompt": f"p {i}", "draw_idx": 0, "response": f"r {i} " + "x" * j,
                "status": "ok", "policy": pol} for j, i in enumerate(ids)])
        scores = np.round(rng.uniform(0, 1, n), 2)
        _rows(d / "judge" / f"{pol}.jsonl", [{"prompt_id": i, "draw_idx": 0, "judge_score": float(s),
                                              "status": "ok"} for i, s in zip(ids, scores)])
        _rows(d / "oracle" / f"{pol}.jsonl",
              [{"prompt_id": i, "draw_idx": 0, "oracle_label": float(np.clip(s + rng.normal(0, .1), 0, 1)),
                "status": "ok" if j % 4 else "not_selected"} for j, (i, s) in enumerate(zip(ids, scores))])
        (d / "logprobs").mkdir(parents=True, exist_ok=True)
        _write_logprobs(d / "logprobs" / f"{pol}.jsonl", ids, pol, failed=("q007",) if k else ())
    return ids


def test_parquet_copy_gives_bit_identical_estimates(tmp_path, capsys):
    import cje

    d = tmp_path
    _scored_stage_files(d)
    cfg = write_config(d / "cfg.yaml", make_config("http://127.0.0.1:9/v1"))
    assert cli_main(["dataset", "--config", str(cfg), "--responses-dir", str(d / "responses"),
                     "--logprobs-dir", str(d / "logprobs"), "--judge-dir", str(d / "judge"),
                     "--oracle-dir", str(d / "oracle"), "--output", str(d / "ds.jsonl"),
                     "--fresh-draws-dir", str(d / "fresh"), "--parquet-output", str(d / "col" / "ds.parquet"),
                     "--parquet-fresh-draws-dir", str(d / "col" / "fresh")]) == 0
    assert (d / "col" / "ds.parquet").read_bytes()[:4] == b"PAR1"
    assert sorted(p.name for p in (d / "col" / "fresh").iterdir()) == ["base_responses.parquet",
                                                                       "short_responses.parquet"]
    for estimator, calibration in (("calibrated-ips", "monotone"), ("dr-cpo", "auto")):
        kw = dict(estimator=estimator, calibration=calibration, oracle_coverage=0.5)
        a = cje.analyze(d / "ds.jsonl", fresh_draws=d / "fresh", **kw)
        b = cje.analyze(d / "col" / "ds.parquet", fresh_draws=d / "col" / "fresh", **kw)
        assert a.estimates.equals(b.estimates)
        for payload in (a.payload, b.payload):  # everything but where the files were and when
            del payload["metadata"]["inputs"], payload["metadata"]["created_at"]
        assert a.payload == b.payload


def test_parquet_outputs_come_in_pairs(tmp_path):
    import pytest

    from cje.errors import ConfigError
    from cje.llm.stages.dataset import assemble_dataset
    _stage_files(tmp_path, ["a", "b"])
    with pytest.raises(ConfigError, match="--parquet-fresh-draws-dir"):
        assemble_dataset(make_config("http://127.0.0.1:9/v1"), str(tmp_path / "responses"),
                         str(tmp_path / "logprobs"), str(tmp_path / "judge"), str(tmp_path / "oracle"),
                         str(tmp_path / "ds.jsonl"), str(tmp_path / "fresh"), parquet_output=str(tmp_path / "x"))
