"""CI-sized end-to-end run on the embedded local model (.test/config/config.yaml):
every stage for real, then the report, then nothing left to do."""

from __future__ import annotations

import csv
import json

import pytest

from .wfutil import load_yaml, planned_jobs, run_snakemake

pytestmark = [pytest.mark.llm, pytest.mark.slow]


def test_test_config_end_to_end_on_local_model(workflow_dir):
    cfg = load_yaml(workflow_dir / ".test" / "config" / "config.yaml")
    args = ("--configfile", ".test/config/config.yaml")
    run_snakemake(workflow_dir, "--profile", "profiles/local", *args, timeout=900)

    n = cfg["prompts"]["n_samples"]
    targets = [p for p in cfg["policies"] if p != cfg["base_policy"]]
    # every intermediate is a declared, complete file
    for policy in cfg["policies"]:
        for stage in ("responses", "logprobs", "judge", "oracle"):
            rows = (workflow_dir / "data" / stage / f"{policy}.jsonl").read_text().splitlines()
            assert len(rows) == n, (stage, policy)
    logged = (workflow_dir / "data" / "cje_dataset.jsonl").read_text().splitlines()
    assert len(logged) == n
    for policy in targets:
        assert (workflow_dir / "data" / "fresh_draws" / f"{policy}_responses.jsonl").exists()

    # the configured grid, exactly at the documented paths
    for estimator in cfg["analysis"]["estimators"]:
        for coverage in cfg["analysis"]["oracle_coverages"]:
            out = workflow_dir / "results" / estimator / f"coverage_{coverage:g}"
            result = json.loads((out / "estimates.json").read_text())
            assert result["metadata"]["estimator"] == estimator
            assert result["metadata"]["target_policies"] == targets
            assert (out / "estimates.csv").exists() and (out / "plot_data.npz").exists()
            assert list((out / "plots").glob("*.png"))
    with open(workflow_dir / "results" / "summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert {r["policy"] for r in summary} >= set(targets)
    assert (workflow_dir / "results" / "summary.html").stat().st_size > 0

    # complete: a dry run plans nothing
    assert planned_jobs(workflow_dir, *args) == {}

    # snakemake --report collects the plots and tables
    run_snakemake(workflow_dir, *args, "--report", "report.html")
    page = (workflow_dir / "report.html").read_text(errors="replace")
    assert "summary.csv" in page and ".png" in page
