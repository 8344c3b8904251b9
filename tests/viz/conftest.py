"""Fixtures for the viz tests: one real analysis of the arena sample, rendered once per session."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cje.viz import render_analysis_plots


@pytest.fixture(scope="session")
def arena_result(arena_logged: Path, arena_fresh: Path):
    """calibrated-ips at 25% oracle coverage, seed 0, on the arena sample (in-process run_analysis)."""
    from cje.analysis.run import AnalysisConfig, run_analysis
    from cje.estimators.context import AnalysisOptions

    config = AnalysisConfig(data=str(arena_logged), estimator="calibrated-ips", fresh_draws_dir=str(arena_fresh),
                            options=AnalysisOptions(oracle_coverage=0.25, seed=0))
    return run_analysis(config)


@pytest.fixture(scope="session")
def arena_payload(arena_result) -> dict:
    return arena_result.to_dict()


@pytest.fixture(scope="session")
def rendered(arena_result, arena_payload, tmp_path_factory) -> dict[str, Path]:
    """The files render_analysis_plots wrote for the arena analysis, by file name."""
    out = tmp_path_factory.mktemp("arena_plots") / "plots"
    paths = render_analysis_plots(arena_payload, arena_result.plot_data, out)
    return {p.name: p for p in paths}


def with_statuses(payload: dict, statuses: dict[str, str]) -> dict:
    """A copy of ``payload`` with the given policies' status (and ``reliable``) replaced."""
    out = copy.deepcopy(payload)
    for name, status in statuses.items():
        block = out["metadata"]["policies"][name]
        block["status"] = status
        block["reliable"] = status != "CRITICAL"
        if status == "GOOD":
            block["reasons"] = []
    return out


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decoded_png(path: Path):
    """Check the PNG signature and decode the image; return the pixel array (H x W x channels, 0-1)."""
    from matplotlib.image import imread

    assert Path(path).read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return imread(path)


def colour_share(pixels, hex_colour: str, tol: float = 0.06) -> float:
    """Share of pixels within ``tol`` (per RGB channel, 0-1 scale) of ``hex_colour``."""
    import numpy as np

    target = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return float(np.all(np.abs(pixels[..., :3] - target) <= tol, axis=-1).mean())
