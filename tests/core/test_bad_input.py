"""Bad input: a clear error naming file, line and field, exit code != 0, no output written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cje.cli import main


def _rows(n: int = 30, labelled: int = 20) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        s = float(rng.uniform(0.1, 0.9))
        row = {"prompt_id": f"p{i}", "prompt": f"question {i}", "response": f"answer {i}",
               "base_policy_logprob": float(-10 - rng.uniform(0, 5)),
               "target_policy_logprobs": {"a": float(-10 - rng.uniform(0, 5)), "b": float(-10 - rng.uniform(0, 5))},
               "metadata": {"judge_score": s}}
        if i < labelled:
            row["metadata"]["oracle_label"] = float(np.clip(s + rng.normal(0, 0.1), 0, 1))
        rows.append(row)
    return rows


def _write(path: Path, rows: list, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    for index, text in (raw_lines or {}).items():
        lines[index] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(tmp_path: Path, data: Path, capsys, *extra: str) -> tuple[int, str]:
    out = tmp_path / "out"
    argv = ["analyze", "--data", str(data), "--estimator", "raw-ips", "--output-dir", str(out), *extra]
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def _assert_refused(code: int, err: str, tmp_path: Path, *needles: str) -> None:
    assert code != 0
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "out" / "estimates.json").exists()
    assert not (tmp_path / "out" / "estimates.csv").exists()


def test_valid_file_runs(tmp_path, capsys):
    data = _write(tmp_path / "ok.jsonl", _rows())
    code, err = _run(tmp_path, data, capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "estimates.json").exists()


def test_malformed_json_line(tmp_path, capsys):
    data = _write(tmp_path / "bad.jsonl", _rows(), {6: '{"prompt_id": "p6", "prompt": '})
    code, err = _run(tmp_path, data, capsys)
    _assert_refused(code, err, tmp_path, "bad.jsonl:7", "malformed JSON")


@pytest.mark.parametrize("field", ["prompt", "response", "base_policy_logprob", "target_policy_logprobs"])
def test_missing_required_field(tmp_path, capsys, field):
    rows = _rows()
    del rows[4][field]
    data = _write(tmp_path / "missing.jsonl", rows)
    code, err = _run(tmp_path, data, capsys)
    _assert_refused(code, err, tmp_path, "missing.jsonl:5", f"field '{field}'")


def test_duplicate_prompt_id(tmp_path, capsys):
    rows = _rows()
    rows[9]["prompt_id"] = "p3"
    data = _write(tmp_path / "dup.jsonl", rows)
    code, err = _run(tmp_path, data, capsys)
    _assert_refused(code, err, tmp_path, "dup.jsonl:10", "field 'prompt_id'", "duplicate", "p3")


@pytest.mark.parametrize("value", [1.5, -0.2])
def test_judge_score_outside_unit_interval(tmp_path, capsys, value):
    rows = _rows()
    rows[12]["metadata"]["judge_score"] = value
    data = _write(tmp_path / "judge.jsonl", rows)
    code, err = _run(tmp_path, data, capsys)
    _assert_refused(code, err, tmp_path, "judge.jsonl:13", "field 'judge_score'", "outside [0, 1]")


def test_top_level_judge_score_outside_unit_interval(tmp_path, capsys):
    rows = _rows()
    rows[2]["judge_score"] = 7.0  # arena layout: judge at the top level
    data = _write(tmp_path / "judge_top.jsonl", rows)
    code, err = _run(tmp_path, data, capsys)
    _assert_refused(code, err, tmp_path, "judge_top.jsonl:3", "field 'judge_score'")


def test_fewer_than_ten_oracle_labels(tmp_path, capsys):
    data = _write(tmp_path / "few.jsonl", _rows(labelled=9))
    code, err = _run(tmp_path, data, capsys)
    _assert_refused(code, err, tmp_path, "9 oracle labels", "at least 10", "oracle_label")


def test_coverage_leaving_fewer_than_ten_labels(tmp_path, capsys):
    data = _write(tmp_path / "cov.jsonl", _rows())
    code, err = _run(tmp_path, data, capsys, "--oracle-coverage", "0.2")
    _assert_refused(code, err, tmp_path, "6 oracle labels", "--oracle-coverage")


def test_unknown_estimator(tmp_path, capsys):
    data = _write(tmp_path / "ok.jsonl", _rows())
    code = main(["analyze", "--data", str(data), "--estimator", "magic-ips", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    _assert_refused(code, err, tmp_path, "unknown estimator 'magic-ips'", "calibrated-ips")


@pytest.mark.parametrize("coverage", ["0", "1.5", "-0.1"])
def test_coverage_outside_unit_interval(tmp_path, capsys, coverage):
    data = _write(tmp_path / "ok.jsonl", _rows())
    code, err = _run(tmp_path, data, capsys, "--oracle-coverage", coverage)
    _assert_refused(code, err, tmp_path, "oracle_coverage", "(0, 1]")


def test_direct_without_fresh_draws_says_what_to_pass(tmp_path, capsys):
    data = _write(tmp_path / "ok.jsonl", _rows())
    code = main(["analyze", "--data", str(data), "--estimator", "direct", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    _assert_refused(code, err, tmp_path, "--fresh-draws-dir")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad,reason", [(None, "null"), ("NaN", "nan"), ("Infinity", "inf"),
                                        ("-Infinity", "inf"), (0.5, "positive")])
def test_invalid_logprob_drops_row_for_that_policy_only(tmp_path, capsys, bad, reason):
    rows = _rows()
    lines = {}
    if isinstance(bad, str):  # non-standard JSON tokens Python writes for floats
        rows[3]["target_policy_logprobs"]["a"] = 12345.0
        lines[3] = json.dumps(rows[3]).replace("12345.0", bad)
    else:
        rows[3]["target_policy_logprobs"]["a"] = bad
    data = _write(tmp_path / "lp.jsonl", rows, lines)
    code, err = _run(tmp_path, data, capsys)
    assert code == 0, err
    payload = json.loads((tmp_path / "out" / "estimates.json").read_text())
    pol = payload["metadata"]["policies"]
    assert pol["a"]["n_dropped_by_reason"] == {f"target_logprob_{reason}": 1}
    assert pol["a"]["n_used"] == 29
    assert pol["b"]["n_dropped_by_reason"] == {}
    assert pol["b"]["n_used"] == 30


def test_invalid_base_logprob_drops_row_for_every_policy(tmp_path, capsys):
    rows = _rows()
    rows[5]["base_policy_logprob"] = None
    data = _write(tmp_path / "base.jsonl", rows)
    code, err = _run(tmp_path, data, capsys)
    assert code == 0, err
    pol = json.loads((tmp_path / "out" / "estimates.json").read_text())["metadata"]["policies"]
    for name in ("a", "b"):
        assert pol[name]["n_dropped_by_reason"] == {"base_logprob_null": 1}
        assert pol[name]["n_used"] == 29


def test_more_than_half_dropped_is_critical(tmp_path, capsys):
    rows = _rows()
    for row in rows[:16]:
        row["target_policy_logprobs"]["a"] = 1.0
    data = _write(tmp_path / "half.jsonl", rows)
    code, err = _run(tmp_path, data, capsys)
    assert code == 0, err
    pol = json.loads((tmp_path / "out" / "estimates.json").read_text())["metadata"]["policies"]
    assert pol["a"]["status"] == "CRITICAL" and pol["a"]["reliable"] is False
    assert any("dropped" in r for r in pol["a"]["reasons"])
    assert pol["a"]["n_dropped_by_reason"] == {"target_logprob_positive": 16}
    assert math.isfinite(pol["b"]["estimate"])
