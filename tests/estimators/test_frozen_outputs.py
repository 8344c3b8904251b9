"""No bit moved: today's estimates equal the frozen ones (tests/estimators/frozen_outputs.py).

The analysis shares folds, calibration, weights, outcome-model fits and DR components between
an estimate and its checks and between the estimators of one context; that sharing is pure
bookkeeping, so every number must be bit-for-bit what the code computed before it. Compared
exactly (float bit patterns, NaN included), for replicate 0 of every Monte-Carlo grid and for
every registered estimator on the shipped sample with and without probes.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest

from cje.sim.montecarlo import STANDARD_GRIDS
from tests.estimators.frozen_outputs import PAYLOADS_FILE, ROWS_FILE, montecarlo_rows, sample_payloads


@pytest.fixture(scope="module")
def frozen_rows() -> pl.DataFrame:
    return pl.read_parquet(ROWS_FILE)


def _bits(column: pl.Series) -> np.ndarray:
    values = column.to_numpy()
    return values.astype(np.float64).view(np.int64) if values.dtype.kind == "f" else values


@pytest.mark.parametrize("grid", sorted(STANDARD_GRIDS))
def test_montecarlo_rows_are_bit_identical(frozen_rows, grid):
    want = frozen_rows.filter(pl.col("grid") == grid)
    got = montecarlo_rows(grid)
    assert want.height > 0 and got.columns == want.columns and got.height == want.height
    for name in want.columns:
        diff = np.flatnonzero(_bits(got[name]) != _bits(want[name]))
        assert diff.size == 0, (grid, name, got[int(diff[0])].to_dicts(), want[int(diff[0])].to_dicts())


def _first_difference(got, want, path="") -> str | None:
    if isinstance(want, dict):
        if set(got) != set(want):
            return f"{path}: keys {sorted(set(got) ^ set(want))}"
        return next((d for k in want if (d := _first_difference(got[k], want[k], f"{path}.{k}"))), None)
    if isinstance(want, list):
        if len(got) != len(want):
            return f"{path}: length {len(got)} != {len(want)}"
        return next((d for i, (g, w) in enumerate(zip(got, want)) if (d := _first_difference(g, w, f"{path}[{i}]"))),
                    None)
    same = (type(got) is type(want) and got == want) or (isinstance(want, float) and isinstance(got, float)
                                                         and np.isnan(want) and np.isnan(got))
    return None if same else f"{path}: {got!r} != {want!r}"


def test_sample_payloads_are_identical():
    with gzip.open(PAYLOADS_FILE, "rt") as fh:
        want = json.load(fh)
    got = sample_payloads()
    assert set(got) == set(want) and len(want) == 20
    for key in want:
        assert _first_difference(got[key], want[key]) is None, (key, _first_difference(got[key], want[key]))
