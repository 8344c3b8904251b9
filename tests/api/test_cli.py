"""CLI hygiene (issue 12.4, helper E's part): exit 3 when estimates are refused, --version, did-you-mean,
the decision-first output, the CSV columns, and start-up cost of `import cje` / `cje analyze`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl

from cje import __version__
from cje.cli import main
from cje.results.model import CSV_COLUMNS
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _analyze(arena_logged, arena_fresh, out, *extra) -> list[str]:
    return ["analyze", "--data", str(arena_logged), "--fresh-draws-dir", str(arena_fresh), "--estimator", "direct",
            "--oracle-coverage", "0.25", "--output-dir", str(out), *extra]


def test_refused_estimates_exit_3_and_are_written_as_null(arena_logged, arena_fresh, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_analyze(arena_logged, arena_fresh, out, "--refuse-unreliable")) == 3
    captured = capsys.readouterr()
    assert "estimates withheld (--refuse-unreliable): unhelpful; exit code 3" in captured.err
    payload = json.loads((out / "estimates.json").read_text())
    order = payload["metadata"]["target_policies"]
    assert payload["estimates"][order.index("unhelpful")] is None
    assert "withheld" in captured.out and "Not candidates: unhelpful (estimate withheld)" in captured.out
    # without the flag the same analysis exits 0 and keeps the (unreliable) number
    assert main(_analyze(arena_logged, arena_fresh, tmp_path / "kept")) == 0


def test_exit_code_3_through_the_real_entry_point(arena_logged, arena_fresh, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cje", *_analyze(arena_logged, arena_fresh, tmp_path / "o",
                                                                 "--refuse-unreliable")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr


def test_version():
    proc = subprocess.run([sys.executable, "-m", "cje", "--version"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0 and proc.stdout.strip() == f"cje {__version__}"


def test_unknown_estimator_suggests_the_closest_name(arena_logged, tmp_path, capsys):
    assert main(["analyze", "--data", str(arena_logged), "--estimator", "calibrated_ips",
                 "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown estimator 'calibrated_ips'; did you mean 'calibrated-ips'?" in err
    assert main(["analyze", "--data", str(arena_logged), "--estimator", "zzz", "--output-dir",
                 str(tmp_path / "o")]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_decision_first_output_with_dashboard_and_csv_columns(arena_logged, arena_fresh, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_analyze(arena_logged, arena_fresh, out, "--plots", "--level", "0.9")) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("direct on ") and str(arena_logged) in lines[0]
    assert "250 oracle labels (coverage 0.25 requested, 0.25 used)" in lines[1] and "90% CIs" in lines[1]
    assert "rows dropped: none" in lines[2]
    head = next(line for line in lines if line.startswith("policy"))
    assert "90% CI" in head and "vs base" in head and "p" in head.split()
    assert "95%" not in text
    assert any(line.startswith("Best: ") for line in lines)
    assert f"Dashboard: {out / 'plots' / 'diagnostics_dashboard.html'}" in text
    csv = pl.read_csv(out / "estimates.csv")
    assert csv.columns == CSV_COLUMNS
    assert "ess" not in csv.columns and {"ess_raw", "ess_used"} <= set(csv.columns)


def test_coverage_used_is_reported_when_fewer_labels_exist(arena_logged, arena_fresh, tmp_path, capsys):
    assert main(["analyze", "--data", str(arena_logged), "--estimator", "calibrated-ips", "--oracle-coverage",
                 "0.5", "--output-dir", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "480 oracle labels (coverage 0.5 requested, 0.48 used)" in text
    assert "warning: oracle coverage 0.5 asks for 500 labels" in text
    assert "Dashboard: not written (add --plots to write it)" in text


def test_start_up_imports_stay_lazy():
    """`cje analyze` builds its parser without numpy/polars/matplotlib; `import cje` loads no submodule.
    (Timing lives in the report and benchmarks, not in a timed test.)"""
    code = ("import sys; from cje.cli import build_parser; build_parser(['analyze']); build_parser(['plan']); "
            "build_parser(['cost']); print(sorted(m for m in ('numpy', 'polars', 'matplotlib', 'scipy', 'openai') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV)
    assert out.stdout.strip() == "[]"
