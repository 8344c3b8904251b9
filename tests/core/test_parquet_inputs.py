"""Parquet inputs: detected by their first bytes, the same estimates as JSONL, the same one-line errors.

Also: reading only the fields an analysis uses gives the values a full read gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import cje
from cje.cli import main
from cje.data.jsonl import read_jsonl_frame
from cje.data.loaders import FRESH_FIELDS, LOGGED_FIELDS, load_fresh_draws_dir, load_logged_data
from cje.sim.scenarios import simulate_scenario


def _to_parquet(src: Path, dst: Path) -> Path:
    """The columnar copy of a JSONL file: the same fields, the types the strict reader infers."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    read_jsonl_frame(src).write_parquet(dst)
    return dst


def _parquet_tree(logged: Path, fresh_dir: Path, out: Path) -> tuple[Path, Path]:
    data = _to_parquet(logged, out / "logged_data.parquet")
    for f in sorted(fresh_dir.glob("*_responses.jsonl")):
        _to_parquet(f, out / "fresh_draws" / f"{f.stem}.parquet")
    return data, out / "fresh_draws"


def _same_estimates(a: cje.Result, b: cje.Result) -> None:
    assert a.estimates.columns == b.estimates.columns
    assert a.estimates.equals(b.estimates), (a.estimates, b.estimates)  # bit-identical, nulls included
    payloads = [{**r.payload, "metadata": {k: v for k, v in r.payload["metadata"].items()
                                           if k not in ("inputs", "created_at")}} for r in (a, b)]
    assert payloads[0] == payloads[1]  # every number and diagnostic, not only the estimates


@pytest.mark.parametrize("estimator,calibration", [("calibrated-ips", "monotone"), ("dr-cpo", "monotone"),
                                                   ("direct", "two_stage")])
def test_arena_estimates_identical_from_parquet(arena_logged, arena_fresh, tmp_path, estimator, calibration):
    data, fresh = _parquet_tree(arena_logged, arena_fresh, tmp_path)
    kwargs = dict(estimator=estimator, oracle_coverage=0.25, seed=3, calibration=calibration)
    from_jsonl = cje.analyze(arena_logged, fresh_draws=arena_fresh, **kwargs)
    from_parquet = cje.analyze(data, fresh_draws=fresh, **kwargs)
    _same_estimates(from_jsonl, from_parquet)
    assert from_parquet.payload["metadata"]["inputs"]["data"] == str(data)


def test_simulated_scenario_identical_from_parquet(tmp_path):
    logged, fresh = simulate_scenario("strong", n=400, seed=11).write(tmp_path / "jsonl")
    data, fresh_pq = _parquet_tree(logged, fresh, tmp_path / "parquet")
    for estimator in ("raw-ips", "stacked-dr"):
        _same_estimates(cje.analyze(logged, fresh_draws=fresh, estimator=estimator, oracle_coverage=0.5),
                        cje.analyze(data, fresh_draws=fresh_pq, estimator=estimator, oracle_coverage=0.5))


def test_cli_reads_parquet(arena_logged, arena_fresh, tmp_path, capsys):
    data, fresh = _parquet_tree(arena_logged, arena_fresh, tmp_path / "in")
    runs = {}
    for name, (d, f) in {"jsonl": (arena_logged, arena_fresh), "parquet": (data, fresh)}.items():
        out = tmp_path / name
        code = main(["analyze", "--data", str(d), "--fresh-draws-dir", str(f), "--estimator", "direct",
                     "--oracle-coverage", "0.5", "--output-dir", str(out)])
        assert code == 0, capsys.readouterr().err
        runs[name] = json.loads((out / "estimates.json").read_text())["estimates"]
    assert runs["jsonl"] == runs["parquet"]


@pytest.mark.parametrize("name", ["arena_logged", "clone", "unhelpful"])
def test_projection_gives_the_values_of_a_full_read(arena_logged, arena_fresh, name):
    path = arena_logged if name == "arena_logged" else arena_fresh / f"{name}_responses.jsonl"
    fields = LOGGED_FIELDS if name == "arena_logged" else FRESH_FIELDS
    full = read_jsonl_frame(path)
    kept = [c for c in fields if c in full.columns]
    projected = read_jsonl_frame(path, columns=fields, lengths=["response"])
    assert projected.columns == kept + ["response"]
    assert projected.select(kept).equals(full.select(kept))
    assert projected["response"].equals(full["response"].str.len_chars())


def test_loaders_same_arrays_from_parquet(arena_logged, arena_fresh, tmp_path):
    data, fresh = _parquet_tree(arena_logged, arena_fresh, tmp_path)
    a, b = load_logged_data(arena_logged), load_logged_data(data)
    for attr in ("prompt_ids", "judge_scores", "oracle_labels", "base_logprobs", "response_lengths"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert a.dropped == b.dropped and a.target_policies == b.target_policies
    fa, fb = load_fresh_draws_dir(arena_fresh, a.target_policies), load_fresh_draws_dir(fresh, a.target_policies)
    assert set(fa) == set(fb) == set(a.target_policies)
    for p in fa:
        for attr in ("prompt_ids", "judge_scores", "oracle_labels", "draw_idx", "response_lengths"):
            np.testing.assert_array_equal(getattr(fa[p], attr), getattr(fb[p], attr))
    skipped = load_logged_data(data, response_lengths=False)
    assert skipped.response_lengths is None
    np.testing.assert_array_equal(skipped.judge_scores, a.judge_scores)


# --- bad Parquet: the one-line errors of JSONL, naming the 0-based row -------------------------

def _logged_frame(n: int = 30) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    s = rng.uniform(0.1, 0.9, n)
    return pl.DataFrame({
        "prompt_id": [f"p{i}" for i in range(n)], "prompt": [f"question {i}" for i in range(n)],
        "response": [f"answer {i}" for i in range(n)], "base_policy_logprob": -10 - rng.uniform(0, 5, n),
        "target_policy_logprobs": pl.DataFrame({"a": -10 - rng.uniform(0, 5, n),
                                                "b": -10 - rng.uniform(0, 5, n)}).to_struct(),
        "judge_score": s, "oracle_label": np.clip(s + rng.normal(0, 0.1, n), 0, 1)})


def _refused(tmp_path: Path, frame: pl.DataFrame, capsys, *needles: str) -> str:
    path = tmp_path / "logged.parquet"
    frame.write_parquet(path)
    code = main(["analyze", "--data", str(path), "--estimator", "raw-ips", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "out" / "estimates.json").exists()
    return err


def test_good_parquet_runs(tmp_path, capsys):
    path = tmp_path / "logged.parquet"
    _logged_frame().write_parquet(path)
    assert main(["analyze", "--data", str(path), "--estimator", "raw-ips", "--output-dir", str(tmp_path / "o")]) == 0


def test_parquet_judge_score_as_text(tmp_path, capsys):
    frame = _logged_frame().with_columns(pl.col("judge_score").cast(pl.String))
    _refused(tmp_path, frame, capsys, "logged.parquet row 0", "field 'judge_score'", "must be a number",
             "got the string")


def test_parquet_boolean_judge_score(tmp_path, capsys):
    frame = _logged_frame().with_columns(judge_score=pl.lit(True))
    _refused(tmp_path, frame, capsys, "row 0", "field 'judge_score'", "must be a number, got true")


@pytest.mark.parametrize("column", ["judge_score", "prompt", "response", "base_policy_logprob",
                                    "target_policy_logprobs"])
def test_parquet_missing_column(tmp_path, capsys, column):
    _refused(tmp_path, _logged_frame().drop(column), capsys, "logged.parquet row 0", f"field '{column}'",
             "required")


def test_parquet_duplicate_ids(tmp_path, capsys):
    ids = [f"p{i}" for i in range(30)]
    ids[9] = "p3"
    frame = _logged_frame().with_columns(prompt_id=pl.Series(ids))
    _refused(tmp_path, frame, capsys, "logged.parquet row 9", "field 'prompt_id'", "duplicate", "p3")


def test_parquet_null_response(tmp_path, capsys):
    frame = _logged_frame().with_columns(
        response=pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("response")))
    _refused(tmp_path, frame, capsys, "logged.parquet row 7", "field 'response'", "missing or null")


def test_parquet_judge_outside_unit_interval(tmp_path, capsys):
    frame = _logged_frame().with_columns(
        judge_score=pl.when(pl.int_range(pl.len()) == 12).then(1.5).otherwise(pl.col("judge_score")))
    _refused(tmp_path, frame, capsys, "logged.parquet row 12", "field 'judge_score'", "outside [0, 1]")


def test_parquet_null_logprob_is_dropped_not_refused(tmp_path):
    frame = _logged_frame().with_columns(
        base_policy_logprob=pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise(pl.col("base_policy_logprob")))
    path = tmp_path / "logged.parquet"
    frame.write_parquet(path)
    data = load_logged_data(path)
    assert data.dropped["a"]["base_logprob_null"] == 1 and not data.valid["a"][4]


def test_truncated_parquet(tmp_path, capsys):
    path = tmp_path / "logged.parquet"
    _logged_frame().write_parquet(path)
    path.write_bytes(path.read_bytes()[:-40])
    code = main(["analyze", "--data", str(path), "--estimator", "raw-ips", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "logged.parquet" in err and "not a complete Parquet file" in err


def test_fresh_dir_with_both_formats_of_one_policy(arena_logged, arena_fresh, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "clone_responses.jsonl").write_bytes((arena_fresh / "clone_responses.jsonl").read_bytes())
    _to_parquet(arena_fresh / "clone_responses.jsonl", fresh / "clone_responses.parquet")
    with pytest.raises(cje.InputError, match="both clone_responses.jsonl and clone_responses.parquet"):
        cje.analyze(arena_logged, fresh_draws=fresh, estimator="direct")


def test_renamed_fields_from_parquet_name_the_row(tmp_path):
    frame = _logged_frame().rename({"judge_score": "score"}).with_columns(
        score=pl.when(pl.int_range(pl.len()) == 5).then(12.0).otherwise(pl.col("score") * 10))
    path = tmp_path / "renamed.parquet"
    frame.write_parquet(path)
    with pytest.raises(cje.InputError, match=r"renamed.parquet row 5, field 'score'"):
        cje.analyze(path, estimator="raw-ips", judge_field="score", judge_scale=(0, 10))
