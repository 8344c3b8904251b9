"""Monte-Carlo evaluation of every estimator on the simulated processes (statistics.md 8).

One replicate = one simulated dataset (:func:`cje.sim.scenarios.simulate_scenario`);
for each oracle coverage the analysis context (folds, calibration, fresh-draw
alignment) is built once and every estimator runs on it through the same code
path as ``cje analyze`` (:func:`cje.analysis.run.analyze_context`), so what is
measured is what users get. Replicates run in worker processes (``workers``),
each handling a block of seeds in one process; nothing is started per replicate.

:func:`run_grid` returns one row per (scenario, coverage, estimator, policy,
replicate); :func:`summarise` turns them into the table published in
docs/statistics.md: CI coverage, bias, RMSE, mean SE / Monte-Carlo sd, the share
flagged ``reliable: false``, the share GOOD, and the share of misses marked GOOD.
``python -m benchmarks.monte_carlo`` writes that table.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from cje.analysis.run import analyze_context
from cje.estimators import get_estimator
from cje.estimators.context import AnalysisOptions, build_context
from cje.sim.scenarios import simulate_scenario

__all__ = ["GridSpec", "STANDARD_GRIDS", "BROKEN_TARGETS", "replicate_rows", "run_grid", "summarise", "DEFAULT_ESTIMATORS"]

DEFAULT_ESTIMATORS = ("naive", "direct", "raw-ips", "calibrated-ips", "dr-cpo", "mrdr", "tmle", "oc-dr-cpo",
                      "tr-cpo", "stacked-dr")


@dataclass(frozen=True)
class GridSpec:
    """What to run in a Monte-Carlo grid.

    Parameters
    ----------
    scenario : str or Scenario
        A name in :data:`cje.sim.scenarios.SCENARIOS` or a :class:`~cje.sim.scenarios.Scenario`.
    n : int, default=1000
        Logged prompts per replicate.
    coverages : tuple of float, default=(0.05, 0.10, 0.25, 1.0)
        Oracle coverages.
    estimators : tuple of str, default=DEFAULT_ESTIMATORS
        Estimator names.
    probe_coverage : float, default=0.0
        Share of each target's fresh-draw labels the analysis may use.
    replicates : int, default=200
        Number of replicates.
    seed0 : int, default=0
        Replicate r uses seed ``seed0 + r``.
    """

    scenario: object
    n: int = 1000
    coverages: tuple[float, ...] = (0.05, 0.10, 0.25, 1.0)
    estimators: tuple[str, ...] = DEFAULT_ESTIMATORS
    probe_coverage: float = 0.0
    replicates: int = 200
    seed0: int = 0


# The grids behind the Monte-Carlo tests (tests/stats) and the table in docs/statistics.md
# (python -m benchmarks.monte_carlo): the same seeds, so the published numbers are the tested ones.
# Healthy scenarios run without probes and at the default probe budget (config/config.yaml:
# analysis.probe_coverage 0.5); the scenarios with a judge failure (gaming, a judge-blind defect)
# run without probes and with probe labels on 10% of each target's fresh draws.
STANDARD_GRIDS = {
    "mild": GridSpec("mild", seed0=1_000_000),
    "strong": GridSpec("strong", seed0=2_000_000),
    "mild+probes": GridSpec("mild", probe_coverage=0.5, seed0=7_000_000),
    "strong+probes": GridSpec("strong", probe_coverage=0.5, seed0=8_000_000),
    "gaming+probes": GridSpec("gaming", probe_coverage=0.1, seed0=3_000_000),
    "gaming-unseen+probes": GridSpec("gaming-unseen", probe_coverage=0.1, seed0=4_000_000),
    "gaming": GridSpec("gaming", seed0=5_000_000),
    "gaming-unseen": GridSpec("gaming-unseen", seed0=6_000_000),
    "judge-blind-unseen": GridSpec("judge-blind-unseen", seed0=9_000_000),
    "judge-blind-unseen+probes": GridSpec("judge-blind-unseen", probe_coverage=0.1, seed0=10_000_000),
    "judge-blind-rare": GridSpec("judge-blind-rare", seed0=11_000_000),
    "judge-blind-rare+probes": GridSpec("judge-blind-rare", probe_coverage=0.1, seed0=12_000_000),
}
# Targets whose judge score is not a sufficient surrogate (a judge failure the estimates must
# flag or correct); every other target of a scenario is healthy.
BROKEN_TARGETS = {"gaming": ("gamer",), "gaming-unseen": ("gamer",), "judge-blind-unseen": ("defective",),
                  "judge-blind-rare": ("defective",)}


def replicate_rows(spec: GridSpec, replicate: int) -> list[dict]:
    """All rows of one replicate (every coverage x estimator x target policy).

    Parameters
    ----------
    spec : GridSpec
        The grid.
    replicate : int
        The replicate number (seed ``spec.seed0 + replicate``).

    Returns
    -------
    list of dict
        One row per (coverage, estimator, policy): the truth, estimate, SE (with and without
        OUA), CI, df, status and reliability (NaN where no estimate or CI), the judged
        transport audit's status, the probe labels and the weighted labels' pool weight of
        the estimate's correction (NaN without one).
    """

    seed = spec.seed0 + replicate
    ds = simulate_scenario(spec.scenario, spec.n, seed=seed)
    rows = []
    for coverage in spec.coverages:
        options = AnalysisOptions(oracle_coverage=coverage, seed=seed, probe_coverage=spec.probe_coverage)
        ctx = build_context(ds.logged, ds.fresh, options)
        for name in spec.estimators:
            result = analyze_context(ctx, get_estimator(name))
            diagnostics = result.metadata.get("diagnostics", {})
            for policy, pr in result.policies.items():
                truth = ds.truth[policy]
                transport = (diagnostics.get(policy) or {}).get("transport") or {}
                ok = pr.estimate is not None and pr.ci_lower is not None
                rows.append({
                    "scenario": getattr(spec.scenario, "name", spec.scenario), "probe_coverage": spec.probe_coverage, "oracle_coverage": coverage,
                    "estimator": name, "policy": policy,
                    "replicate": replicate, "truth": truth,
                    "estimate": pr.estimate if ok else np.nan, "se": pr.se if ok else np.nan,
                    "se_without_oua": pr.se_without_oua if ok and pr.se_without_oua is not None else np.nan,
                    "ci_lower": pr.ci_lower if ok else np.nan, "ci_upper": pr.ci_upper if ok else np.nan,
                    "df": pr.df if ok and pr.df is not None else np.nan,
                    "status": pr.status, "reliable": bool(pr.reliable),
                    "transport_audit": transport.get("status"),
                    "n_probe_labels": int(pr.details.get("n_probe_labels", 0) or 0),
                    "label_pool_weight": float(pr.details.get("label_pool_weight", np.nan))})
    return rows


def _block(args: tuple[GridSpec, list[int]]) -> list[dict]:
    spec, reps = args
    out = []
    for r in reps:
        out.extend(replicate_rows(spec, r))
    return out


def run_grid(spec: GridSpec, workers: int | None = None):
    """Run ``spec.replicates`` replicates (blocks of seeds per worker process); returns a polars DataFrame.

    Parameters
    ----------
    spec : GridSpec
        The grid.
    workers : int or None, default=None
        Worker processes (spawned, not forked); default min(2, CPU count).

    Returns
    -------
    polars.DataFrame
        One row per (scenario, coverage, estimator, policy, replicate) (:func:`replicate_rows`).
    """
    import polars as pl

    workers = workers or min(2, os.cpu_count() or 1)
    reps = list(range(spec.replicates))
    blocks = [(spec, reps[i::workers]) for i in range(workers)]
    if workers == 1:
        rows = _block(blocks[0])
    else:
        # spawn, not fork: a parent that has used polars (or any threaded library) can deadlock
        # a forked child on a lock held by a thread that no longer exists
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = [row for part in pool.map(_block, blocks) for row in part]
    return pl.DataFrame(rows)


def summarise(frame, level: float = 0.95):
    """Per (scenario, probe coverage, oracle coverage, estimator, policy): coverage, bias, RMSE, ...

    Parameters
    ----------
    frame : polars.DataFrame
        The rows of :func:`run_grid`.
    level : float, default=0.95
        The confidence level of the intervals (not used by the computation: the intervals are
        those of the rows).

    Returns
    -------
    polars.DataFrame
        Columns: n (replicates in the group), ci_coverage (share of CIs containing the truth),
        ci_coverage_without_oua (the same interval half-width rescaled to se_without_oua), bias
        (mean error), bias_z (bias / Monte-Carlo SE of the mean), rmse, se_ratio (mean reported
        SE / sd of the estimates), flagged (share reliable: false), good (share GOOD),
        good_and_miss (share of replicates GOOD whose CI misses the truth), unflagged_miss
        (share reliable whose CI misses the truth).
    """
    import polars as pl
    from scipy import special

    # the unclipped half-width t_df * SE (a CI clipped to [0, 1] is shorter on one side only)
    df = frame.get_column("df").to_numpy()
    q = np.where(np.isfinite(df), special.stdtrit(np.where(np.isfinite(df), df, 1.0), 0.5 + level / 2),
                 special.ndtri(0.5 + level / 2))
    f = frame.with_columns(
        miss=~((pl.col("ci_lower") <= pl.col("truth")) & (pl.col("truth") <= pl.col("ci_upper"))),
        err=pl.col("estimate") - pl.col("truth"),
        half=pl.Series(q) * pl.col("se"))
    f = f.with_columns(
        miss_without_oua=(pl.col("err").abs() > pl.col("half") * pl.col("se_without_oua") / pl.col("se")))
    aggs = [pl.len().alias("n"),
            (1 - pl.col("miss").mean()).alias("ci_coverage"),
            (1 - pl.col("miss_without_oua").mean()).alias("ci_coverage_without_oua"),
            pl.col("err").mean().alias("bias"),
            (pl.col("err").mean() / (pl.col("err").std() / pl.len().sqrt())).alias("bias_z"),
            (pl.col("err") ** 2).mean().sqrt().alias("rmse"),
            (pl.col("se").mean() / pl.col("estimate").std()).alias("se_ratio"),
            (~pl.col("reliable")).mean().alias("flagged"),
            (pl.col("status") == "GOOD").mean().alias("good"),
            ((pl.col("status") == "GOOD") & pl.col("miss")).mean().alias("good_and_miss"),
            (pl.col("miss") & pl.col("reliable")).mean().alias("unflagged_miss")]
    keys = ["scenario", "probe_coverage", "oracle_coverage", "estimator"]
    per_policy = f.group_by(keys + ["policy"]).agg(aggs).sort(keys + ["policy"])
    return per_policy
