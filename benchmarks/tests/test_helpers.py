"""Tests of the benchmark helpers (no timing assertions: speed targets are printed, not tested).

Run: ``.venv/bin/python -m pytest -q benchmarks/tests`` (a few seconds; needs the
arena sample at ../shared/data/arena_sample for the resampling test).
"""

from __future__ import annotations

import sys

import polars as pl
import pytest

from benchmarks import common, compare, datasets, report, scale
from benchmarks.reference_runner import quadratic_projection


def test_loglog_exponent_recovers_power_law():
    pts = [(n, 3.0 * n ** 1.5) for n in (10_000, 100_000, 1_000_000)]
    assert scale.loglog_exponent(pts) == pytest.approx(1.5, abs=1e-12)
    assert scale.loglog_exponent(pts[:1]) is None


def test_quadratic_projection_is_exact_on_a_quadratic():
    t = lambda n: 2e-3 * n + 5e-6 * n ** 2
    assert quadratic_projection([(1_000, t(1_000)), (10_000, t(10_000))], 100_000) == \
        pytest.approx(t(100_000), rel=1e-9)
    assert quadratic_projection([(1_000, 1.0)], 100_000) is None


def _rec(est, se, reliable=True):
    return {"status": "ok", "wall_seconds": 2.0, "cpu_seconds": 1.0,
            "target_policies": ["a", "b"], "estimates": est, "standard_errors": se,
            "reliable": [reliable, reliable], "reasons": [["ESS low"], ["ESS low"]]}


def test_compare_cell_flags_only_differences_beyond_combined_se():
    ours = _rec([0.50, 0.70], [0.03, 0.04], reliable=False)
    ref = {**_rec([0.52, 0.50], [0.04, 0.03]), "wall_seconds": 100.0, "cpu_seconds": 90.0,
           "target_policies": ["a", "b"]}
    out = compare.compare_cell("dr-cpo", ours, ref)
    assert out["ratio"] == pytest.approx(50.0)
    assert out["cpu_ratio"] == pytest.approx(90.0)
    assert out["max_abs_diff"] == pytest.approx(0.20)
    assert [d["policy"] for d in out["differs"]] == ["b"]  # |0.2| > 0.05; |0.02| < 0.05
    assert out["differs"][0]["combined_se"] == pytest.approx(0.05)
    assert "§7b" in out["differs"][0]["likely_reason"]
    assert "unreliable" in out["differs"][0]["likely_reason"]


def test_compare_cell_aligns_policies_by_name():
    ours = _rec([0.5, 0.7], [0.01, 0.01])
    ref = {**_rec([0.7, 0.5], [0.01, 0.01]), "target_policies": ["b", "a"]}
    assert compare.compare_cell("calibrated-ips", ours, ref)["differs"] == []


def test_api_ratios_reads_the_api_throughput_shape():
    api = {"rows": [{"concurrency": 1, "ratio": 0.97}, {"concurrency": 32, "ratio": 0.8}]}
    assert report.api_ratios(api) == {1: 0.97, 32: 0.8}
    assert report.api_ratios({"by_concurrency": {"8": {"efficiency": 0.9}}}) == {8: 0.9}


def test_targets_missing_parts_are_never_pass():
    rows = report.targets({})
    assert rows and all(r["result"] == "N/A" for r in rows)
    cell = lambda est, ratio: {"n": 10_000, "estimator": est, "ratio": ratio,
                               "ours": {"status": "ok"}, "reference": {"status": "ok"}}
    comp = {"cells": [cell("dr-cpo", 120.0), cell("mrdr", 60.0), cell("raw-ips", 3.0), cell("calibrated-ips", 4.5)]}
    rows = report.targets({"compare": comp})
    results = {r["target"].split()[0]: r["result"] for r in rows if "n=10,000" in r["target"]}
    assert results == {"dr-cpo": "PASS", "mrdr": "MISS", "raw-ips": "MISS", "calibrated-ips": "PASS"}
    later = {r["target"].split()[0]: r["result"] for r in rows if "n=10,000" not in r["target"]}
    assert later["stacked-dr"] == "N/A" and later["raw-ips"] == "N/A"  # n=100,000 not in the cells


def test_arena_resampled_copies_fresh_draws_under_new_ids(tmp_path):
    if not (common.ARENA_DIR / "logged_data.jsonl").exists():
        pytest.fail(f"arena sample missing at {common.ARENA_DIR}")
    ds = datasets.arena_resampled(300, seed=1, root=tmp_path / "a")
    logged = pl.read_ndjson(ds.logged)
    ids = logged["metadata"].struct.field("prompt_id")
    assert logged.height == 300 and ids.n_unique() == 300
    assert logged["oracle_label"].is_not_null().sum() == ds.n_oracle == 30
    src_fresh = pl.read_ndjson(common.ARENA_DIR / "fresh_draws" / "clone_responses.jsonl")
    fresh = pl.read_ndjson(ds.fresh_draws_dir / "clone_responses.jsonl")
    assert sorted(fresh["prompt_id"]) == sorted(ids)
    # the copy's fresh draw is its source prompt's draw: same prompt text, same judge score
    joined = fresh.join(src_fresh, on="prompt", suffix="_src").unique("prompt_id")
    assert (joined["judge_score"] == joined["judge_score_src"]).all()
    # seeded: the same recipe elsewhere gives the same bytes and the same input digest
    again = datasets.arena_resampled(300, seed=1, root=tmp_path / "b")
    assert again.logged.read_bytes() == ds.logged.read_bytes()
    assert again.input_digest == ds.input_digest


def test_synthetic_has_the_documented_shape(tmp_path):
    ds = datasets.synthetic(2_000, root=tmp_path)
    logged = pl.read_ndjson(ds.logged)
    assert logged.height == 2_000 and logged["oracle_label"].is_not_null().sum() == 200
    lp = logged["target_policy_logprobs"].struct.unnest()
    assert set(lp.columns) == set(datasets.SYNTH_POLICIES)
    assert (lp.max_horizontal() <= 0).all() and (logged["base_policy_logprob"] <= 0).all()
    for p in datasets.SYNTH_POLICIES:
        f = pl.read_ndjson(ds.fresh_draws_dir / f"{p}_responses.jsonl")
        assert f.height == 2_000 and f["judge_score"].is_between(0, 1).all()


def test_run_measured_reports_the_child_peak_memory():
    m = common.run_measured([sys.executable, "-c", "b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096])"])
    assert m.returncode == 0
    assert m.peak_rss_mb >= 300


def _cell(n, est, fmt, ours_s, ours_mb, ref_s, ref_mb):
    ours = {"status": "ok", "wall_seconds": ours_s, "peak_rss_mb": ours_mb}
    ref = {"status": "ok", "wall_seconds": ref_s, "peak_rss_mb": ref_mb}
    return {"n": n, "estimator": est, "format": fmt, "ours": ours, "reference": ref, "ratio": ref_s / ours_s}


def test_issue_20_targets_need_speed_and_memory_and_say_when_parquet_is_missing():
    cells = [_cell(100_000, "calibrated-ips", "jsonl", 2.0, 700, 20.0, 853),   # 10x, less memory: PASS
             _cell(100_000, "calibrated-ips", "parquet", 1.0, 900, 20.0, 853),  # 20x but more memory: MISS
             _cell(100_000, "raw-ips", "jsonl", 2.0, 500, 11.0, 827),           # 5.5x: MISS
             {**_cell(100_000, "raw-ips", "parquet", 1.0, 1, 1.0, 1), "ratio": None,
              "ours": {"status": "failed", "error": "cje analyze: cannot read x.parquet"}}]
    rows = {r["target"]: r for r in report.targets({"compare": {"cells": cells}})}
    got = {(t.split()[0], "Parquet" in t): r["result"] for t, r in rows.items() if "n=100,000 from" in t}
    assert got == {("calibrated-ips", False): "PASS", ("calibrated-ips", True): "MISS",
                   ("raw-ips", False): "MISS", ("raw-ips", True): "N/A"}
    assert "cannot read x.parquet" in next(r["note"] for t, r in rows.items() if t.startswith("raw-ips at n=100,000 "
                                                                                              "from Parquet"))
    assert report.speedup_target_at_10k("raw-ips")[0] == 4.0
    assert report.speedup_target_at_10k("stacked-dr")[0] == 100.0
    assert report.speedup_target_at_10k("direct")[0] == 50.0


def test_million_direct_target_is_ten_seconds_and_two_gigabytes():
    def rows(seconds, mib):
        run = {"n": 1_000_000, "estimator": "direct", "status": "ok", "wall_seconds": seconds,
               "peak_rss_mb": mib, "analysis_seconds": seconds - 0.3}
        scale_part = {"runs": [run], "exponents": {"direct": None}, "exponents_last_interval": {}}
        return [r for r in report.targets({"scale": scale_part}) if "with its checks" in r["target"]]
    assert rows(9.5, 1800)[0]["result"] == "PASS"
    assert rows(10.5, 1800)[0]["result"] == "MISS"
    assert rows(9.5, 1950)[0]["result"] == "MISS"  # 2.04 GB
