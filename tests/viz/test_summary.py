"""cje summarize: summary rows and accuracy metrics on a synthetic results tree with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cje.cli import main
from cje.errors import InputError
from cje.results.model import validate_estimates
from cje.viz.sweep import (SUMMARY_COLUMNS, accuracy_by_policy, accuracy_table, load_summary,
                             pairwise_ranking_accuracy, ranking_accuracy_by_seed, summary_frame)

TRUTH = {"p": 0.2, "q": 0.5, "r": 0.8}


def make_payload(estimator: str, coverage: float, seed: int, estimates: dict, half_width: float,
                 truth: dict | None = TRUTH, status: dict | None = None) -> dict:
    """A minimal schema-valid estimates.json: symmetric CIs, error/in_ci computed as cje analyze does."""
    status = status or {}
    policies, truths = {}, {}
    for name, est in estimates.items():
        lo, hi = (None, None) if est is None else (est - half_width, est + half_width)
        st = status.get(name, "GOOD")
        policies[name] = {"estimate": est, "se": None if est is None else half_width / 1.96, "ci_lower": lo,
                          "ci_upper": hi, "se_without_oua": None, "ess": 0.5, "max_weight": 3.0, "status": st,
                          "reliable": st != "CRITICAL", "reasons": [], "n_used": 100, "n_dropped_by_reason": {}}
        if truth is not None:
            t = truth[name]
            truths[name] = {"truth": t, "truth_se": 0.01, "n_labels": 50,
                            "error": None if est is None else est - t,
                            "in_ci": None if est is None else bool(lo <= t <= hi)}
    names = list(estimates)
    meta = {"target_policies": names, "estimator": estimator, "n_samples": 100, "oracle_coverage": coverage,
            "oracle_coverage_used": coverage, "seed": seed, "n_oracle": int(round(coverage * 100)),
            "calibration": {"mode": "monotone", "oof_rmse": 0.2, "oof_r2": 0.1}, "diagnostics": {n: {} for n in names},
            "policies": policies}
    if truth is not None:
        meta["ground_truth"] = truths
    payload = {"estimates": [estimates[n] for n in names],
               "standard_errors": [policies[n]["se"] for n in names],
               "confidence_intervals": [[policies[n]["ci_lower"], policies[n]["ci_upper"]] for n in names],
               "metadata": meta}
    validate_estimates(payload)
    return payload


def write(root: Path, rel: str, payload: dict) -> Path:
    path = root / rel / "estimates.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


@pytest.fixture()
def results_tree(tmp_path) -> Path:
    """Estimator A at coverage 0.1 with seeds 0/1 (seed level), B at 0.5 one seed (no seed level)."""
    root = tmp_path / "results"
    # seed 0: errors +.05, -.05, +.05, all inside +-0.1 CIs, order right
    write(root, "A/coverage_0.1/seed_0", make_payload("A", 0.1, 0, {"p": 0.25, "q": 0.45, "r": 0.85}, 0.1))
    # seed 1: errors +.4, 0, +.1; +-0.05 CIs contain only q; p and q swapped -> 2 of 3 pairs right
    write(root, "A/coverage_0.1/seed_1", make_payload("A", 0.1, 1, {"p": 0.6, "q": 0.5, "r": 0.9}, 0.05,
                                                      status={"p": "CRITICAL"}))
    # B: tie between p and q (pair scores 1/2), r withheld (null) and so left out; path says nothing true
    write(root, "misnamed/coverage_0.9", make_payload("B", 0.5, 3, {"p": 0.5, "q": 0.5, "r": None}, 0.2,
                                                      status={"r": "CRITICAL"}))
    return root


def test_summary_rows_come_from_metadata_not_paths(results_tree):
    frame = load_summary(results_tree)
    assert frame.columns == SUMMARY_COLUMNS
    assert frame.height == 9
    b = frame.filter(pl.col("estimator") == "B")
    assert b["oracle_coverage"].unique().to_list() == [0.5] and b["seed"].unique().to_list() == [3]
    assert b["source"].unique().to_list() == ["misnamed/coverage_0.9/estimates.json"]
    r = b.filter(pl.col("policy") == "r").row(0, named=True)
    assert r["estimate"] is None and r["error"] is None and r["in_ci"] is None and r["status"] == "CRITICAL"
    p1 = frame.filter((pl.col("estimator") == "A") & (pl.col("seed") == 1) & (pl.col("policy") == "p")).row(
        0, named=True)
    assert p1["reliable"] is False and p1["in_ci"] is False
    assert p1["error"] == pytest.approx(0.4) and p1["ci_lower"] == pytest.approx(0.55)


def test_accuracy_known_answers(results_tree):
    acc = {(r["estimator"], r["oracle_coverage"]): r for r in accuracy_table(load_summary(results_tree)).iter_rows(
        named=True)}
    a = acc[("A", 0.1)]
    errors = np.array([0.05, -0.05, 0.05, 0.4, 0.0, 0.1])
    assert a["n_seeds"] == 2 and a["n_policies"] == 3 and a["n_estimates"] == 6
    assert a["bias"] == pytest.approx(errors.mean())
    assert a["rmse"] == pytest.approx(math.sqrt(np.mean(errors ** 2)))
    assert a["mean_abs_bias"] == pytest.approx((0.225 + 0.025 + 0.075) / 3)
    assert a["ci_coverage"] == pytest.approx(4 / 6)
    assert a["ci_coverage_reliable"] == pytest.approx(4 / 5)  # seed 1's p is CRITICAL and missed
    assert a["share_reliable"] == pytest.approx(5 / 6)
    assert a["mean_ci_width"] == pytest.approx((3 * 0.2 + 3 * 0.1) / 6)
    assert a["ranking_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    b = acc[("B", 0.5)]
    assert b["n_estimates"] == 2  # the withheld estimate is not scored
    assert b["bias"] == pytest.approx((0.3 + 0.0) / 2)
    assert b["ranking_accuracy"] == pytest.approx(0.5)  # p, q tied in the estimate: one pair, scores 1/2
    assert b["ci_coverage"] == pytest.approx(0.5)  # p: [0.3, 0.7] misses 0.2; q: contains 0.5


def test_accuracy_by_policy_known_answers(results_tree):
    per = accuracy_by_policy(load_summary(results_tree)).filter(pl.col("estimator") == "A")
    assert per["policy"].to_list() == ["p", "q", "r"]
    np.testing.assert_allclose(per["bias"].to_numpy(), [0.225, -0.025, 0.075])
    np.testing.assert_allclose(per["rmse"].to_numpy(), np.sqrt([(0.05 ** 2 + 0.4 ** 2) / 2, 0.05 ** 2 / 2,
                                                                 (0.05 ** 2 + 0.1 ** 2) / 2]))
    np.testing.assert_allclose(per["ci_coverage"].to_numpy(), [0.5, 1.0, 0.5])
    assert per["n_unreliable"].to_list() == [1, 0, 0]


def test_ranking_accuracy_polars_matches_numpy():
    rng = np.random.default_rng(20261127)
    rows = []
    for seed in range(6):
        truth = rng.uniform(size=7)
        truth[1] = truth[0]  # a tied truth pair is not scored
        est = truth + rng.normal(scale=0.2, size=7)
        est[3] = est[2]  # a tied estimate pair scores 1/2
        rows += [{"estimator": "E", "oracle_coverage": 0.2, "seed": seed, "policy": f"p{i}", "estimate": est[i],
                  "truth": truth[i]} for i in range(7)]
    frame = pl.DataFrame(rows)
    by_seed = ranking_accuracy_by_seed(frame)
    assert by_seed["n_pairs"].to_list() == [20] * 6
    for seed in range(6):
        sub = frame.filter(pl.col("seed") == seed)
        want = pairwise_ranking_accuracy(sub["estimate"].to_numpy(), sub["truth"].to_numpy())
        assert by_seed.filter(pl.col("seed") == seed)["ranking_accuracy"].item() == pytest.approx(want)


def test_pairwise_ranking_accuracy_edge_cases():
    assert pairwise_ranking_accuracy(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])) == 1.0
    assert pairwise_ranking_accuracy(np.array([0.3, 0.2, 0.1]), np.array([1.0, 2.0, 3.0])) == 0.0
    assert pairwise_ranking_accuracy(np.array([0.1, np.nan, 0.3]), np.array([1.0, 2.0, 3.0])) == 1.0
    assert math.isnan(pairwise_ranking_accuracy(np.array([0.1, 0.2]), np.array([1.0, 1.0])))


def test_no_ground_truth_gives_empty_accuracy(tmp_path):
    write(tmp_path, "x", make_payload("A", 0.2, 0, {"p": 0.3, "q": 0.6}, 0.1, truth=None))
    frame = load_summary(tmp_path)
    assert frame["truth"].null_count() == 2
    assert accuracy_table(frame).height == 0 and ranking_accuracy_by_seed(frame).height == 0


def test_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(InputError, match="no estimates.json found"):
        load_summary(tmp_path)
    with pytest.raises(InputError, match="results folder not found"):
        load_summary(tmp_path / "missing")
    bad = tmp_path / "bad" / "estimates.json"
    bad.parent.mkdir()
    bad.write_text('{"estimates": [0.5],\n "metadata": oops}')
    with pytest.raises(InputError, match=r"bad/estimates.json:2.*malformed JSON"):
        load_summary(tmp_path)
    payload = make_payload("A", 0.2, 0, {"p": 0.3}, 0.1)
    del payload["metadata"]["policies"]["p"]["status"]
    bad.write_text(json.dumps(payload))
    with pytest.raises(InputError, match=r"bad/estimates.json.*field 'metadata.policies.p'.*'status'"):
        load_summary(tmp_path)


def test_identical_duplicates_keep_the_shortest_path_and_different_ones_fail(tmp_path, caplog):
    payload = make_payload("A", 0.2, 0, {"p": 0.3, "q": 0.4}, 0.1)
    write(tmp_path, "A/coverage_0.2", payload)
    write(tmp_path, "A/coverage_0.2/seed_0", payload)
    frame = load_summary(tmp_path)
    assert frame.height == 2 and frame["source"].unique().to_list() == ["A/coverage_0.2/estimates.json"]
    assert "identical results in several files" in caplog.text
    write(tmp_path, "A/coverage_0.2/seed_0", make_payload("A", 0.2, 0, {"p": 0.35, "q": 0.4}, 0.1))
    with pytest.raises(InputError, match="different results in several files") as info:
        load_summary(tmp_path)
    message = str(info.value)
    assert "A/coverage_0.2/estimates.json" in message and "A/coverage_0.2/seed_0/estimates.json" in message
    assert "policy p " in message and summary_frame([]).height == 0


def test_cli_writes_csv_accuracy_and_self_contained_html(results_tree, tmp_path, capsys):
    csv_path, acc_path = tmp_path / "summary.csv", tmp_path / "accuracy.csv"
    html_path, fig = tmp_path / "summary.html", tmp_path / "coverage.png"
    code = main(["summarize", "--results-dir", str(results_tree), "--output", str(csv_path), "--html",
                 str(html_path), "--accuracy-output", str(acc_path), "--figure", str(fig)])
    assert code == 0
    out = capsys.readouterr().out
    assert "3 analyses, 9 rows" in out
    csv = pl.read_csv(csv_path)
    assert csv.columns == SUMMARY_COLUMNS and csv.height == 9
    acc = pl.read_csv(acc_path)
    assert acc.filter(pl.col("estimator") == "A")["ranking_accuracy"].item() == pytest.approx(5 / 6)
    text = html_path.read_text()
    assert "http://" not in text and "https://" not in text
    assert "data:image/png;base64," in text and fig.read_bytes()[:4] == b"\x89PNG"
    assert f"{np.mean([0.05, -0.05, 0.05, 0.4, 0.0, 0.1]):+.4f}" in text  # A's bias in the accuracy table
    assert "0.83" in text  # A's ranking accuracy
    for policy in ("p", "q", "r"):
        assert f'data-sort="{policy}"' in text


def test_cli_reports_a_bad_file_as_exit_code_2(tmp_path, capsys):
    (tmp_path / "estimates.json").write_text("{")
    code = main(["summarize", "--results-dir", str(tmp_path), "--output", str(tmp_path / "s.csv")])
    assert code == 2
    assert "estimates.json:1" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_summary_of_real_arena_analyses(arena_result, arena_logged, arena_fresh, tmp_path):
    """Two real analyses (calibrated-ips from the session fixture, direct run here) summarised end to end."""
    from cje.analysis.run import AnalysisConfig, run_analysis
    from cje.estimators.context import AnalysisOptions
    from cje.results.files import publish_analysis

    root = tmp_path / "results"
    publish_analysis(arena_result, root / "calibrated-ips" / "coverage_0.25")
    direct = run_analysis(AnalysisConfig(data=str(arena_logged), estimator="direct", fresh_draws_dir=str(arena_fresh),
                                         options=AnalysisOptions(oracle_coverage=0.25, seed=0)))
    publish_analysis(direct, root / "direct" / "coverage_0.25")
    frame = load_summary(root)
    assert frame.height == 6 and frame["truth"].null_count() == 0
    for result in (arena_result, direct):
        payload = result.to_dict()
        rows = frame.filter(pl.col("estimator") == payload["metadata"]["estimator"])
        truth = payload["metadata"]["ground_truth"]
        assert rows["policy"].to_list() == sorted(truth)
        np.testing.assert_allclose(rows["error"].to_numpy(), [truth[p]["error"] for p in sorted(truth)])
        acc = accuracy_table(rows)
        errors = np.array([truth[p]["error"] for p in truth])
        assert acc["rmse"].item() == pytest.approx(math.sqrt(np.mean(errors ** 2)))
        assert acc["ci_coverage"].item() == pytest.approx(np.mean([truth[p]["in_ci"] for p in truth]))
        est = np.array([result.policies[p].estimate for p in sorted(truth)])
        assert acc["ranking_accuracy"].item() == pytest.approx(
            pairwise_ranking_accuracy(est, np.array([truth[p]["truth"] for p in sorted(truth)])))
