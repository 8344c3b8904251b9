"""The Monte-Carlo grids (cje.sim.montecarlo.STANDARD_GRIDS), each run once per test session.

Every grid is 200 replicates x oracle coverage {0.05, 0.10, 0.25, 1.0} x every registered
estimator x the scenario's target policies, n = 1,000 logged prompts, fixed seeds; the
replicates run in two worker processes. docs/statistics.md publishes the same grids
(python -m benchmarks.monte_carlo), so the numbers there are the numbers tested here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cje.sim.montecarlo import STANDARD_GRIDS, run_grid

_RESULTS: dict[str, pl.DataFrame] = {}


@pytest.fixture(scope="session")
def grid():
    """grid(name) -> the rows of STANDARD_GRIDS[name] with ``miss``/``err`` columns (computed once).

    With ``CJE_MC_FRAMES=DIR`` the raw rows of each grid are also written to DIR/{name}.parquet,
    so ``python -m benchmarks.monte_carlo --load-frames DIR`` can publish the table of exactly
    the rows this session tested without computing them again.
    """

    def get(name: str) -> pl.DataFrame:
        if name not in _RESULTS:
            frame = run_grid(STANDARD_GRIDS[name])
            save = os.environ.get("CJE_MC_FRAMES")
            if save:
                Path(save).mkdir(parents=True, exist_ok=True)
                frame.write_parquet(Path(save) / f"{name}.parquet")
            _RESULTS[name] = frame.with_columns(
                miss=~((pl.col("ci_lower") <= pl.col("truth")) & (pl.col("truth") <= pl.col("ci_upper"))),
                err=pl.col("estimate") - pl.col("truth"))
        return _RESULTS[name]

    return get


def binomial_band(p: float, n: int, k: float = 3.0) -> tuple[float, float]:
    """p +- k binomial standard errors for a share over n independent trials."""
    half = k * np.sqrt(p * (1 - p) / n)
    return p - half, p + half
