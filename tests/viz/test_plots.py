"""Every per-analysis plot renders from the real arena sample as a valid, non-blank PNG."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cje.viz import DASHBOARD_FILE, PLOT_FILES, render_analysis_plots
from cje.viz.forest import plot_policy_estimates
from cje.viz.plots import WEIGHT_FLOOR, plot_weight_distributions, reliability_bins
from cje.viz.style import OKABE_ITO, STATUS_COLOURS
from tests.conftest import REPO
from tests.viz.conftest import colour_share, decoded_png, with_statuses

# (min width, min height) in pixels at 120 dpi; the largest sensible size is 3000 x 3000.
MIN_SIZE = {"weight_distributions.png": (1200, 400), "calibration_curve.png": (1000, 450),
            "policy_estimates.png": (800, 450)}


def test_render_writes_every_file_in_contract_order(rendered):
    assert list(rendered) == [*PLOT_FILES, DASHBOARD_FILE]
    for path in rendered.values():
        assert path.parent.name == "plots" and path.stat().st_size > 0
        assert not list(path.parent.glob(".*.tmp")), "temporary files left behind"


@pytest.mark.parametrize("name", PLOT_FILES)
def test_png_is_valid_sized_and_not_blank(rendered, name):
    pixels = decoded_png(rendered[name])
    height, width = pixels.shape[:2]
    min_w, min_h = MIN_SIZE[name]
    assert min_w <= width <= 3000 and min_h <= height <= 3000, (width, height)
    grey = pixels[..., :3].mean(axis=-1)
    ink = float((grey < 0.9).mean())  # share of clearly non-white pixels
    assert 0.02 < ink < 0.6, f"{name}: {ink:.3f} of the pixels are ink"
    assert pixels[..., :3].std() > 0.05


def test_weight_plot_shows_raw_and_used_weights_in_their_colours(rendered):
    pixels = decoded_png(rendered["weight_distributions.png"])
    assert colour_share(pixels, OKABE_ITO["orange"]) > 0.002  # used-weight outlines
    assert colour_share(pixels, "#B3D3E8", tol=0.08) > 0.01   # raw histogram: Okabe-Ito blue at alpha .35


def test_forest_plot_marks_critical_policies(rendered, arena_payload):
    statuses = {arena_payload["metadata"]["policies"][p]["status"] for p in arena_payload["metadata"]["policies"]}
    assert statuses == {"CRITICAL"}  # calibrated-ips on the arena sample: every target fails the weight rules
    pixels = decoded_png(rendered["policy_estimates.png"])
    assert colour_share(pixels, STATUS_COLOURS["CRITICAL"]) > 0.001
    assert colour_share(pixels, STATUS_COLOURS["GOOD"]) < 0.0005  # only the legend swatch


def test_forest_plot_colours_follow_status(arena_payload, tmp_path):
    good = with_statuses(arena_payload, {p: "GOOD" for p in arena_payload["metadata"]["target_policies"]})
    pixels = decoded_png(plot_policy_estimates(good, tmp_path / "good.png"))
    critical = decoded_png(plot_policy_estimates(arena_payload, tmp_path / "critical.png"))
    assert colour_share(pixels, STATUS_COLOURS["GOOD"]) > 5 * colour_share(critical, STATUS_COLOURS["GOOD"])
    assert colour_share(pixels, STATUS_COLOURS["CRITICAL"]) < colour_share(critical, STATUS_COLOURS["CRITICAL"]) / 5


def test_forest_plot_with_withheld_estimate_and_no_truth(arena_payload, tmp_path):
    payload = with_statuses(arena_payload, {})
    meta = payload["metadata"]
    meta.pop("ground_truth")
    meta["policies"]["unhelpful"].update(estimate=None, se=None, ci_lower=None, ci_upper=None)
    decoded_png(plot_policy_estimates(payload, tmp_path / "withheld.png"))


def test_weight_plot_for_an_estimator_without_weights(arena_result, arena_payload, tmp_path):
    no_weights = dataclasses.replace(arena_result.plot_data, used_weights={})
    pixels = decoded_png(plot_weight_distributions(arena_payload, no_weights, tmp_path / "w.png"))
    assert colour_share(pixels, OKABE_ITO["orange"]) < 0.0005


def test_render_without_plot_data_writes_forest_and_dashboard(arena_payload, tmp_path):
    paths = render_analysis_plots(arena_payload, None, tmp_path)
    assert [p.name for p in paths] == ["policy_estimates.png", DASHBOARD_FILE]
    assert "need plot_data.npz" in paths[-1].read_text()


def test_reliability_bins_known_answer():
    predicted = np.array([0.2, 0.2, 0.2, 0.2, 0.5, 0.5, 0.9, 0.9, np.nan])
    observed = np.array([0.0, 1.0, 0.0, 1.0, 0.4, 0.6, 1.0, 1.0, 0.3])
    bins = reliability_bins(predicted, observed, n_bins=10)
    assert bins["n"].to_list() == [4, 2, 2]  # tied predictions never split, NaN row ignored
    np.testing.assert_allclose(bins["mean_predicted"].to_numpy(), [0.2, 0.5, 0.9])
    np.testing.assert_allclose(bins["mean_observed"].to_numpy(), [0.5, 0.5, 1.0])
    se = np.std([0.0, 1.0, 0.0, 1.0], ddof=1) / 2
    np.testing.assert_allclose(bins["se_observed"].to_numpy(), [se, np.std([0.4, 0.6], ddof=1) / np.sqrt(2), 0.0])
    assert reliability_bins(np.array([np.nan]), np.array([1.0])).height == 0


def test_weight_floor_is_below_any_weight_that_matters():
    assert WEIGHT_FLOOR <= 1e-6


def test_cli_analyze_plots_writes_every_plot(arena_logged, arena_fresh, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "cje", "analyze", "--data", str(arena_logged),
                           "--fresh-draws-dir", str(arena_fresh), "--estimator", "calibrated-ips",
                           "--oracle-coverage", "0.25", "--plots", "--output-dir", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "plots unavailable" not in proc.stderr
    for name in [*PLOT_FILES, DASHBOARD_FILE]:
        path = Path(out / "plots" / name)
        assert path.exists(), name
    for name in PLOT_FILES:
        decoded_png(out / "plots" / name)
