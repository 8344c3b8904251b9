"""SIGKILL at random points while an analysis's outputs are published over an earlier run's set.

After every kill the folder must hold one complete set, the old one or the new one:
first as readers see it (:func:`cje.results.files.current_set`, before any repair), then on
disk after :func:`cje.results.files.recover` (what the next ``cje analyze`` runs first).

Part 1 (60 kills) kills a child that publishes two different results over and over
(A: 40 rows, raw-ips, with plots/ every other time; B: 60 rows, calibrated-ips, no
plots), so most kills land inside the publication step itself. Part 2 (12 kills)
kills the real ``cje analyze`` CLI at random times while it overwrites an earlier run.
Delays come from a seeded generator; where exactly a kill lands still depends on the
machine, so the test asserts consistency after every kill and that at least some kills
interrupted a publication (a staging folder was left).
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hardlib import rows, write_jsonl

from cje.results.files import MARKER, current_set, publish_analysis, recover
from cje.viz import render_analysis_plots
from cje.results.model import PlotData

KILLS_PUBLISH = 60
KILLS_CLI = 12

CHILD = """
import pickle, sys
from pathlib import Path
from cje.results.files import publish_analysis
from cje.viz import render_analysis_plots
a, b = (pickle.loads(Path(p).read_bytes()) for p in sys.argv[1:3])
out = Path(sys.argv[3])
print("ready", flush=True)
i = 0
while True:
    publish_analysis(a, out, render=render_analysis_plots if i % 4 == 0 else None)
    publish_analysis(b, out)
    i += 1
"""


def _set_signature(files: dict[str, Path | None]) -> tuple[int, str, bool]:
    """(n_samples, estimator, has plots) of a set after checking its members agree; raises otherwise."""
    assert files["estimates.json"] is not None and files["estimates.csv"] is not None, files
    payload = json.loads(files["estimates.json"].read_text())
    meta = payload["metadata"]
    with open(files["estimates.csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["policy"] for r in table] == meta["target_policies"]
    assert [float(r["estimate"]) for r in table] == pytest.approx(payload["estimates"], rel=1e-12)
    assert files["plot_data.npz"] is not None
    plot = PlotData.load(files["plot_data.npz"])
    assert plot.judge_scores.size == meta["n_samples"]
    plots = files["plots"]
    if plots is not None:
        names = sorted(os.listdir(plots))
        assert names == ["calibration_curve.png", "diagnostics_dashboard.html", "policy_estimates.png",
                         "weight_distributions.png"], names
        assert meta["estimator"] in (plots / "diagnostics_dashboard.html").read_text()
    return meta["n_samples"], meta["estimator"], plots is not None


def _check_folder(out: Path, allowed: set[tuple[int, str]]) -> bool:
    """Reader view, then disk after recovery, are the same complete allowed set; return whether a
    publication had been interrupted (a staging folder was present)."""
    interrupted = any(e.startswith(".cje-publish.") for e in os.listdir(out))
    seen = _set_signature(current_set(out))
    assert seen[:2] in allowed, seen
    recover(out)
    assert not [e for e in os.listdir(out) if e.startswith(".") and e != MARKER], os.listdir(out)
    on_disk = _set_signature({n: (out / n if (out / n).exists() else None)
                              for n in ("estimates.json", "estimates.csv", "plot_data.npz", "plots")})
    assert on_disk == seen
    if seen[1] == "calibrated-ips":
        assert not seen[2]  # B never has plots: an earlier A's dashboard must be gone
    return interrupted


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    from cje.api import analyze

    d = tmp_path_factory.mktemp("kill")
    data_a = write_jsonl(d / "a.jsonl", rows(40))
    data_b = write_jsonl(d / "b.jsonl", rows(60, seed=3))
    a = analyze(str(data_a), estimator="raw-ips").analysis
    b = analyze(str(data_b), estimator="calibrated-ips").analysis
    (d / "a.pkl").write_bytes(pickle.dumps(a))
    (d / "b.pkl").write_bytes(pickle.dumps(b))
    return d / "a.pkl", d / "b.pkl", data_a, data_b


def test_kills_during_publication_never_leave_a_mixed_set(tmp_path, results):
    pickle_a, pickle_b, _, _ = results
    out = tmp_path / "out"
    a = pickle.loads(pickle_a.read_bytes())
    publish_analysis(a, out, render=render_analysis_plots)  # the earlier run's complete set
    allowed = {(40, "raw-ips"), (60, "calibrated-ips")}
    rng = np.random.default_rng(2024)
    interrupted = 0
    for _ in range(KILLS_PUBLISH):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(pickle_a), str(pickle_b), str(out)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 0.6)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        interrupted += _check_folder(out, allowed)
    print(f"{KILLS_PUBLISH} kills, {interrupted} inside a publication (staging folder left)")
    assert interrupted >= KILLS_PUBLISH // 10, interrupted


def test_kills_of_cje_analyze_over_an_earlier_run(tmp_path, results):
    _, _, data_a, data_b = results
    out = tmp_path / "out"
    base = [sys.executable, "-m", "cje", "analyze", "--output-dir", str(out)]
    first = subprocess.run(base + ["--data", str(data_a), "--estimator", "raw-ips", "--plots"],
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    allowed = {(40, "raw-ips"), (60, "calibrated-ips")}
    rng = np.random.default_rng(7)
    for i in range(KILLS_CLI):
        data, estimator = (data_b, "calibrated-ips") if i % 2 == 0 else (data_a, "raw-ips")
        child = subprocess.Popen(base + ["--data", str(data), "--estimator", estimator],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.2, 1.6)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        _check_folder(out, allowed)
