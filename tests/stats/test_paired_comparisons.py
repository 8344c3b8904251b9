"""The vectorised paired comparisons equal the definition: :func:`interval` of the aligned
influence difference and the jackknife difference, clipped to [-1, 1], with its t p-value."""

from __future__ import annotations

import numpy as np
import pytest

from cje.stats.inference import (DIFFERENCE_BOUNDS, NUMERICAL_ZERO, align_influence, interval, paired_comparisons,
                                 two_sided_p_value)


def _definition(ea, ida, pa, ja, eb, idb, pb, jb, level):
    a, b = align_influence(ida, pa, idb, pb)
    jack = None
    if ja is not None or jb is not None:
        k = len(ja if ja is not None else jb)
        ja = np.full(k, ea) if ja is None else ja
        jb = np.full(k, eb) if jb is None else jb
        jack = ja - jb if ja.size == jb.size else None
    res = interval(ea - eb, a - b, jack, level=level, bounds=DIFFERENCE_BOUNDS)
    p = two_sided_p_value(res.estimate, res.se, res.df)
    zero = p == 1.0 and res.se <= NUMERICAL_ZERO
    return {"difference": 0.0 if zero else res.estimate, "se": res.se, "ci_lower": 0.0 if zero else res.ci_lower,
            "ci_upper": 0.0 if zero else res.ci_upper, "df": res.df, "p_value": p,
            "se_without_oua": res.se_without_oua, "oracle_variance": res.oracle_variance}


def test_every_pair_matches_the_definition_including_the_edge_cases():
    rng = np.random.default_rng(3)
    ids = np.array([f"p{i}" for i in range(40)])
    k = 24
    est = list(rng.uniform(0.2, 0.8, k))
    phi = [rng.normal(0, 0.3, 40) for _ in range(k)]
    jack = [rng.normal(e, 0.01, 5) if i % 3 else None for i, e in enumerate(est)]
    idl = [ids] * k
    est[4], phi[4], jack[4] = est[3], phi[3], jack[3]          # an A/A pair: p = 1, difference exactly 0
    jack[7] = np.array([np.nan, 0.5, 0.51, 0.49, 0.5])          # a fold without an estimate
    jack[8] = rng.normal(0.5, 0.01, 4)                          # another number of folds: no OUA for its pairs
    idl[10], phi[10] = ids[5:], phi[10][5:]                     # fewer prompts: aligned on the union
    idl[11] = ids[::-1].copy()                                  # same prompts, another order
    pairs = [(a, b) for a in range(k) for b in range(k) if a != b]
    got = paired_comparisons(est, idl, phi, jack, pairs, level=0.9)
    for (a, b), g in zip(pairs, got):
        want = _definition(est[a], idl[a], phi[a], jack[a], est[b], idl[b], phi[b], jack[b], 0.9)
        assert g.keys() == want.keys()
        for key, value in want.items():
            if value is None:
                assert g[key] is None, (a, b, key)
            else:
                assert g[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (a, b, key)
    aa = got[pairs.index((3, 4))]
    assert (aa["difference"], aa["p_value"]) == (0.0, 1.0)
    assert got[pairs.index((7, 8))]["oracle_variance"] is None  # 5 and 4 folds: no jackknife difference


def test_batches_do_not_change_the_numbers(monkeypatch):
    """Pairs computed in batches of a few rows equal pairs computed in one batch."""
    import cje.stats.inference as inference

    rng = np.random.default_rng(5)
    ids = np.arange(30)
    est = list(rng.uniform(0, 1, 8))
    phi = [rng.normal(0, 0.2, 30) for _ in est]
    jack = [rng.normal(e, 0.02, 5) for e in est]
    pairs = [(a, b) for a in range(8) for b in range(a)]
    one = paired_comparisons(est, [ids] * 8, phi, jack, pairs)
    monkeypatch.setattr(inference, "BATCH_VALUES", 60)  # two pairs per batch
    assert paired_comparisons(est, [ids] * 8, phi, jack, pairs) == one
