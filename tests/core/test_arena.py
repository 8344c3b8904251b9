"""Checks on the real Chatbot Arena sample (statistics.md section 8, issue 2)."""

from __future__ import annotations

import json
import math

import pytest

from cje.analysis.run import AnalysisConfig, run_analysis
from cje.cli import main
from cje.estimators.context import AnalysisOptions
from cje.estimators import estimator_names
from cje.results.model import CSV_COLUMNS, AnalysisOutput, validate_estimates

HONEST_POLICIES = ("clone", "parallel_universe_prompt")


def _run(logged, fresh, estimator, coverage=0.25, seed=0, probe=0.0):
    config = AnalysisConfig(data=str(logged), fresh_draws_dir=str(fresh), estimator=estimator,
                            options=AnalysisOptions(oracle_coverage=coverage, seed=seed, probe_coverage=probe))
    return run_analysis(config).to_dict()


@pytest.mark.parametrize("coverage", [0.25, 0.5])
@pytest.mark.parametrize("seed", range(5))
def test_direct_within_truth_tolerance(arena_logged, arena_fresh, coverage, seed):
    payload = _run(arena_logged, arena_fresh, "direct", coverage, seed)
    truth = payload["metadata"]["ground_truth"]
    for policy in HONEST_POLICIES:
        r = payload["metadata"]["policies"][policy]
        t = truth[policy]
        tolerance = 1.96 * math.sqrt(r["se"] ** 2 + t["truth_se"] ** 2)
        assert abs(r["estimate"] - t["truth"]) <= tolerance, (policy, r["estimate"], t, tolerance)
        assert t["n_labels"] == 500  # every fresh-draw label is ground truth without probes


@pytest.mark.parametrize("estimator", [e for e in estimator_names()])
def test_unhelpful_flagged_by_every_estimator_without_probes(arena_logged, arena_fresh, estimator):
    payload = _run(arena_logged, arena_fresh, estimator, 0.25, 0)
    unhelpful = payload["metadata"]["policies"]["unhelpful"]
    assert unhelpful["reliable"] is False and unhelpful["status"] == "CRITICAL"
    assert any("overlap 0.47" in r for r in unhelpful["reasons"]), unhelpful["reasons"]
    assert payload["metadata"]["diagnostics"]["unhelpful"]["judge_overlap"] == pytest.approx(0.47, abs=0.005)


def test_probe_labels_show_the_transport_failure_of_unhelpful(arena_logged, arena_fresh):
    payload = _run(arena_logged, arena_fresh, "direct", 0.25, 0, probe=0.1)
    diag = payload["metadata"]["diagnostics"]
    audit = diag["unhelpful"]["transport"]
    # a residual of -0.17 on 50 probes; the fold calibrators disagree on unhelpful's scores (outside
    # the logged ones: judge overlap 0.47), so the audit's oracle part has K - 1 = 4 df and the fixed
    # check level (two-sided 0.002) does not reject: not a PASS, and the estimate does not rest on it
    assert audit["n_probe"] == 50 and audit["delta"] < -0.1 and audit["status"] != "PASS"
    assert audit["df"] < 10 and not audit["pass_reachable"]
    unhelpful = payload["metadata"]["policies"]["unhelpful"]
    assert unhelpful["status"] == "WARNING"  # corrected with probes, but the judge says little about it
    assert any("overlap 0.47" in r and "probe labels' correction alone" in r for r in unhelpful["reasons"])
    for policy in HONEST_POLICIES:
        # 50 probes cannot show the calibration equivalent within the estimate's own SE (the
        # revised PASS rule), but nothing fails; direct applies the probe correction itself, so it
        # no longer rests on transport and its assumptions are all checked or by design: GOOD
        assert diag[policy]["transport"]["status"] in ("PASS", "UNTESTED")
        block = payload["metadata"]["policies"][policy]
        assert block["status"] == "GOOD", block["reasons"]
        assert {a["id"]: a["status"] for a in block["assumptions"]} == {"fresh_draws": "DESIGN",
                                                                        "random_labels": "DESIGN"}
        truth = payload["metadata"]["ground_truth"][policy]
        assert block["ci_lower"] <= truth["truth"] <= block["ci_upper"]
    # probes are not ground truth: 500 labels minus 50 probes remain
    assert payload["metadata"]["ground_truth"]["unhelpful"]["n_labels"] == 450


def test_without_probes_no_estimate_resting_on_transport_is_good(arena_logged, arena_fresh):
    """statistics.md 7 (revised): GOOD means the assumptions were checked; 250 weighted labels
    cannot show transport within the SE of a direct estimate, so it is at most WARNING, with the fix."""
    payload = _run(arena_logged, arena_fresh, "direct", 0.25, 0)
    for policy in HONEST_POLICIES:
        block = payload["metadata"]["policies"][policy]
        assert block["status"] == "WARNING"
        assert any("'transport' not checked" in r and "--probe-coverage" in r for r in block["reasons"])


def test_ips_flags_poor_overlap(arena_logged, arena_fresh):
    payload = _run(arena_logged, arena_fresh, "calibrated-ips", 0.25, 0)
    pol = payload["metadata"]["diagnostics"]
    assert pol["parallel_universe_prompt"]["weights_raw"]["ess"] < 0.01
    assert pol["clone"]["weights_raw"]["ess"] == pytest.approx(0.21, abs=0.02)
    assert payload["metadata"]["policies"]["parallel_universe_prompt"]["reliable"] is False


def test_refuse_unreliable_writes_null(arena_logged, arena_fresh, tmp_path):
    out = tmp_path / "out"
    code = main(["analyze", "--data", str(arena_logged), "--fresh-draws-dir", str(arena_fresh), "--estimator",
                 "direct", "--oracle-coverage", "0.25", "--refuse-unreliable", "--output-dir", str(out)])
    assert code == 3  # estimates were withheld (issue 12.4)
    payload = json.loads((out / "estimates.json").read_text())
    order = payload["metadata"]["target_policies"]
    assert payload["estimates"][order.index("unhelpful")] is None
    assert payload["estimates"][order.index("clone")] is not None
    csv_lines = (out / "estimates.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == CSV_COLUMNS  # documented in docs/api.md, "Columns"
    assert len(csv_lines) == 4


@pytest.mark.parametrize("estimator", ["naive", "direct", "raw-ips", "calibrated-ips"])
def test_estimates_json_validates_and_round_trips(arena_logged, arena_fresh, tmp_path, estimator):
    out = tmp_path / "out"
    assert main(["analyze", "--data", str(arena_logged), "--fresh-draws-dir", str(arena_fresh), "--estimator",
                 estimator, "--oracle-coverage", "0.5", "--seed", "3", "--output-dir", str(out)]) == 0
    text = (out / "estimates.json").read_text()
    payload = json.loads(text)
    validate_estimates(payload)
    assert AnalysisOutput.from_dict(json.loads(text)).to_dict() == payload
    meta = payload["metadata"]
    assert meta["n_samples"] == 1000 and meta["seed"] == 3 and meta["oracle_coverage"] == 0.5
    assert meta["n_oracle"] == 480  # 500 requested, 480 in the file: all used, with a warning
    assert any("asks for 500 labels" in w for w in meta["warnings"])
    assert meta["calibration"]["mode"] == "monotone"
    assert set(meta["target_policies"]) == {"clone", "parallel_universe_prompt", "unhelpful"}
    for name, block in meta["policies"].items():
        assert block["ci_lower"] <= block["estimate"] <= block["ci_upper"]
        if estimator != "naive":
            assert block["se"] >= block["se_without_oua"]


def test_pipeline_layout_and_arena_layout_agree(arena_logged, tmp_path):
    """The same rows with judge/oracle under metadata (the pipeline's layout) give the same analysis."""
    rows = [json.loads(line) for line in arena_logged.read_text().splitlines() if line.strip()]
    for row in rows:
        meta = row.setdefault("metadata", {})
        meta["judge_score"] = row.pop("judge_score")
        if "oracle_label" in row:
            meta["oracle_label"] = row.pop("oracle_label")
        row["prompt_id"] = meta.pop("prompt_id")
    moved = tmp_path / "pipeline_layout.jsonl"
    moved.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    opts = AnalysisOptions(oracle_coverage=0.25, seed=1)
    a = run_analysis(AnalysisConfig(data=str(arena_logged), estimator="raw-ips", options=opts)).to_dict()
    b = run_analysis(AnalysisConfig(data=str(moved), estimator="raw-ips", options=opts)).to_dict()
    assert a["estimates"] == b["estimates"]


def test_auto_calibration_uses_fresh_draw_lengths_and_records_choice(arena_logged, arena_fresh):
    config = AnalysisConfig(data=str(arena_logged), fresh_draws_dir=str(arena_fresh), estimator="direct",
                            options=AnalysisOptions(oracle_coverage=0.5, seed=0, calibration_mode="auto"))
    payload = run_analysis(config).to_dict()
    choice = payload["metadata"]["calibration"]["auto_choice"]
    assert choice["chosen"] == payload["metadata"]["calibration"]["mode"]
    assert choice["rmse_monotone"] > 0 and choice["rmse_two_stage"] > 0
    for policy in HONEST_POLICIES:
        r = payload["metadata"]["policies"][policy]
        t = payload["metadata"]["ground_truth"][policy]
        assert abs(r["estimate"] - t["truth"]) <= 1.96 * math.sqrt(r["se"] ** 2 + t["truth_se"] ** 2)
