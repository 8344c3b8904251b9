"""Quiet by default, against the real CLI (``python -m cje`` in a subprocess): ``--json`` (one
JSON object on stdout with the documented keys), ``--quiet`` (nothing but errors) for
``cje analyze`` and ``cje summarize``, and no matplotlib font-cache line on a first run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hardlib import cje_process, many_policies, one_line_error

from cje.results.decision import best_policy


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> dict:
    """A dataset with 6 targets and its analysis (text output)."""
    root = tmp_path_factory.mktemp("one")
    data = many_policies(root / "logged.jsonl", 6)
    proc = cje_process("analyze", "--data", data, "--estimator", "calibrated-ips", "--output-dir", root / "out",
                       cwd=root)
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "data": data, "json": root / "out" / "estimates.json", "text": proc.stdout}


SUMMARY_KEYS = {"schema", "estimator", "data", "n_samples", "n_oracle", "oracle_coverage", "oracle_coverage_used",
                "seed", "level", "base", "policies", "best", "comparisons_mode", "warnings", "withheld", "files"}
POLICY_KEYS = {"policy", "estimate", "se", "ci_lower", "ci_upper", "status", "reliable", "reasons", "vs_base",
               "truth", "truth_in_ci"}


def test_json_prints_one_object_with_the_documented_keys(one, tmp_path):
    out = tmp_path / "out"
    proc = cje_process("analyze", "--data", one["data"], "--estimator", "calibrated-ips", "--output-dir", out, "--json",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert set(record) == SUMMARY_KEYS and record["schema"] == "cje.analyze.summary/1"
    payload = json.loads((out / "estimates.json").read_text())
    meta = payload["metadata"]
    assert [p["policy"] for p in record["policies"]] == meta["target_policies"]
    for p in record["policies"]:
        assert set(p) == POLICY_KEYS
        assert p["estimate"] == meta["policies"][p["policy"]]["estimate"]
        assert p["vs_base"]["policy_b"] == "base" and p["vs_base"]["se"] > 0
    best = best_policy(payload)
    assert (record["best"]["policy"], record["best"]["resolved"]) == (best.policy, best.resolved)
    assert record["best"]["text"] == best.describe()
    assert record["files"]["json"] == str(out / "estimates.json") and record["files"]["dashboard"] is None


def test_quiet_prints_nothing_but_errors(one, tmp_path):
    out = tmp_path / "out"
    proc = cje_process("analyze", "--data", one["data"], "--estimator", "calibrated-ips", "--output-dir", out,
                       "--quiet", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert (out / "estimates.json").is_file()
    loud = cje_process("analyze", "--data", one["data"], "--estimator", "calibrated-ips", "--output-dir", out,
                       cwd=tmp_path)
    assert "Best:" in loud.stdout  # without --quiet the summary is printed
    bad = cje_process("analyze", "--data", tmp_path / "missing.jsonl", "--estimator", "raw-ips", "--output-dir", out,
                      "--quiet", cwd=tmp_path)
    one_line_error(bad, "analyze", "missing.jsonl")
    assert bad.stdout == ""
    both = cje_process("analyze", "--data", one["data"], "--estimator", "raw-ips", "--output-dir", out, "--quiet",
                       "--json", cwd=tmp_path)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_summarize_json_and_quiet(one, tmp_path):
    inputs = [one["json"]]
    proc = cje_process("summarize", "--inputs", *inputs, "--output", tmp_path / "s.csv", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["schema"] == "cje.summarize/1" and record["analyses"] == 1 and record["rows"] == 6
    assert record["files"] == [str(tmp_path / "s.csv")]
    quiet = cje_process("summarize", "--inputs", *inputs, "--output", tmp_path / "q.csv", "--quiet", cwd=tmp_path)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "") and (tmp_path / "q.csv").is_file()


FONT_CACHE = ("fontManager", "font cache", "Matplotlib created a temporary")


def test_no_matplotlib_font_cache_line_on_a_first_run(one, tmp_path):
    """A fresh, empty MPLCONFIGDIR and HOME: matplotlib builds its font cache, and says so on stderr
    unless cje quiets it (the control run, plain matplotlib under the same logging, shows the line)."""
    def fresh(name):
        home, mpl = tmp_path / name / "home", tmp_path / name / "mpl"
        home.mkdir(parents=True), mpl.mkdir(parents=True)
        return {"HOME": str(home), "MPLCONFIGDIR": str(mpl), "XDG_CACHE_HOME": "", "XDG_CONFIG_HOME": ""}

    control = subprocess.run(
        [sys.executable, "-c", "import logging; logging.basicConfig(level=logging.INFO); "
                               "import matplotlib.font_manager"],
        env={**os.environ, **fresh("control")}, text=True, capture_output=True, timeout=120)
    assert any(n in control.stderr for n in FONT_CACHE), control.stderr  # the line exists to be silenced
    env = fresh("cje")
    proc = cje_process("analyze", "--data", one["data"], "--estimator", "calibrated-ips", "--output-dir",
                       tmp_path / "o", "--plots", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(Path(env["MPLCONFIGDIR"]).glob("fontlist*.json"))  # the cache was built in this run
    assert not any(n in proc.stderr for n in FONT_CACHE), proc.stderr
    assert (tmp_path / "o" / "plots" / "diagnostics_dashboard.html").is_file()
