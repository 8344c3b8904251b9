"""Sweep summary: every estimates.json under a results folder as one table, plus accuracy metrics.

Pure functions on polars frames. The sweep layout is
``results/{estimator}/coverage_{c}/[seed_{s}/]estimates.json``, but estimator,
oracle coverage and seed are read from each file's metadata, never from its path.

Accuracy against ground truth (``metadata.ground_truth``, the mean oracle label
of a policy's fresh draws), per estimator and oracle coverage, over seeds and
policies whose truth is known and whose estimate was not withheld:

- bias = mean(estimate - truth); mean_abs_bias = mean over policies of |bias of that policy|
- rmse = sqrt(mean((estimate - truth)^2))
- ci_coverage = share of (policy, seed) whose CI contains the truth
- ranking_accuracy = per seed, the share of policy pairs with different truths whose
  estimated order matches the true order (a tie in the estimates counts 1/2),
  then averaged over seeds.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import jsonschema
import numpy as np
import polars as pl
from tqdm import tqdm

from cje.errors import InputError, json_error_text
from cje.results.files import current_set
from cje.results.model import validate_estimates

__all__ = ["SUMMARY_COLUMNS", "find_estimates", "source_root", "payload_rows", "summary_frame", "load_summary",
           "pairwise_ranking_accuracy", "ranking_accuracy_by_seed", "accuracy_by_policy", "accuracy_table"]

SUMMARY_SCHEMA = {
    "estimator": pl.String, "oracle_coverage": pl.Float64, "seed": pl.Int64, "policy": pl.String,
    "estimate": pl.Float64, "se": pl.Float64, "ci_lower": pl.Float64, "ci_upper": pl.Float64,
    "status": pl.String, "reliable": pl.Boolean, "truth": pl.Float64, "truth_se": pl.Float64,
    "error": pl.Float64, "in_ci": pl.Boolean, "oracle_coverage_used": pl.Float64, "n_samples": pl.Int64,
    "n_oracle": pl.Int64, "source": pl.String,
}
SUMMARY_COLUMNS = list(SUMMARY_SCHEMA)
_RUN = ["estimator", "oracle_coverage"]

log = logging.getLogger(__name__)


def find_estimates(results_dir: str | Path) -> list[Path]:
    """Every ``estimates.json`` below ``results_dir`` (any depth), sorted by path.

    For interactive use (``cje summarize --results-dir``); the workflow passes its
    declared files instead (``--inputs``, :func:`load_summary` ``paths``), so folders
    it did not ask for never reach its summary.

    Parameters
    ----------
    results_dir : str or Path
        The results folder.

    Returns
    -------
    list of Path
        The files, sorted by path.

    Raises
    ------
    InputError
        The folder does not exist.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError("results folder not found", path=str(results_dir))
    return sorted(results_dir.rglob("estimates.json"))


def source_root(paths: list[Path]) -> Path:
    """The folder ``source`` names are relative to when only files are given.

    The common parent of the files' ``{estimator}`` folders (``results/`` for a sweep laid
    out as ``results/{estimator}/coverage_{c}/[seed_{s}/]estimates.json``).

    Parameters
    ----------
    paths : list of Path
        estimates.json files.

    Returns
    -------
    Path
        The common parent folder.
    """
    bases = []
    for path in paths:
        folder = path.parent
        while folder.name.startswith(("coverage_", "seed_")) and folder.parent != folder:
            folder = folder.parent
        bases.append(str(folder.parent))
    return Path(os.path.commonpath(bases))


def payload_rows(payload: dict, source: str) -> list[dict]:
    """One summary row per target policy of one estimates.json payload (columns: ``SUMMARY_COLUMNS``).

    Parameters
    ----------
    payload : dict
        An estimates.json payload.
    source : str
        The file's path, as shown in the ``source`` column.

    Returns
    -------
    list of dict
        One row per target policy.
    """
    meta = payload["metadata"]
    truths = meta.get("ground_truth") or {}
    rows = []
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        t = truths.get(name) or {}
        rows.append({"estimator": meta["estimator"], "oracle_coverage": float(meta["oracle_coverage"]),
                     "seed": int(meta["seed"]), "policy": name, "estimate": r["estimate"], "se": r["se"],
                     "ci_lower": r["ci_lower"], "ci_upper": r["ci_upper"], "status": r["status"],
                     "reliable": r["reliable"], "truth": t.get("truth"), "truth_se": t.get("truth_se"),
                     "error": t.get("error"), "in_ci": t.get("in_ci"),
                     "oracle_coverage_used": meta.get("oracle_coverage_used"), "n_samples": meta["n_samples"],
                     "n_oracle": meta["n_oracle"], "source": source})
    return rows


def summary_frame(rows: list[dict]) -> pl.DataFrame:
    """Rows -> the summary frame, sorted by estimator, oracle coverage, seed, policy.

    Two files may hold the same (estimator, oracle_coverage, seed, policy), e.g. the
    workflow's first seed at ``coverage_{c}/estimates.json`` and the same seed asked for
    again as ``coverage_{c}/seed_{s}/``. When their estimate, SE, CI and status agree the
    copy with the shortest path is kept (logged as a warning).

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`payload_rows`.

    Returns
    -------
    polars.DataFrame
        Columns ``SUMMARY_COLUMNS``, one row per (estimator, oracle_coverage, seed, policy).

    Raises
    ------
    InputError
        Two copies differ (they come from different settings); the message names both files.
    """
    frame = pl.DataFrame(rows, schema=SUMMARY_SCHEMA) if rows else pl.DataFrame(schema=SUMMARY_SCHEMA)
    key = ["estimator", "oracle_coverage", "seed", "policy"]
    values = ["estimate", "se", "ci_lower", "ci_upper", "status"]
    dupes = frame.filter(pl.len().over(key) > 1)
    if dupes.height:
        conflicts = dupes.filter(pl.struct(values).n_unique().over(key) > 1)
        if conflicts.height:
            first = conflicts.row(0, named=True)
            files = sorted(set(conflicts.filter(pl.all_horizontal(pl.col(k) == first[k] for k in key))["source"]))
            raise InputError(f"estimator {first['estimator']}, oracle coverage {first['oracle_coverage']:g}, "
                             f"seed {first['seed']}, policy {first['policy']} has different results in "
                             f"several files: {', '.join(files)}", path=files[0], field="metadata.seed")
        log.warning("identical results in several files, keeping the shortest path: %s",
                    ", ".join(sorted(set(dupes["source"]))))
        frame = (frame.sort(pl.col("source").str.len_chars(), "source")
                 .unique(subset=key, keep="first", maintain_order=True))
    return frame.sort(key)


def load_summary(results_dir: str | Path | None = None,
                 paths: list[str | Path] | None = None) -> pl.DataFrame:
    """Read and validate estimates.json files into the summary frame.

    ``paths`` given: exactly those files (duplicates read once), in that set, nothing
    else; ``results_dir`` is then only the folder ``source`` names are relative to
    (default :func:`source_root` of the files). ``paths`` absent: every
    estimates.json below ``results_dir`` (:func:`find_estimates`).

    The ``source`` column holds each file's path relative to that folder (the
    path as given when the file lies outside it).

    Parameters
    ----------
    results_dir : str, Path or None, default=None
        The results folder.
    paths : list of str or Path, or None, default=None
        The estimates.json files.

    Returns
    -------
    polars.DataFrame
        The summary frame (:func:`summary_frame`).

    Raises
    ------
    InputError
        Naming the file (and the JSON field for schema errors) when a file is missing or
        malformed, or when there is no file at all.
    """
    if paths is not None:
        paths = sorted({Path(p) for p in paths})
        if not paths:
            raise InputError("no estimates.json given", field="--inputs")
        for path in paths:
            if not path.is_file():
                raise InputError("estimates file not found", path=str(path))
        results_dir = Path(results_dir) if results_dir is not None else source_root(paths)
    else:
        if results_dir is None:
            raise InputError("give the results folder or the estimates.json files", field="--inputs")
        results_dir = Path(results_dir)
        paths = find_estimates(results_dir)
        if not paths:
            raise InputError("no estimates.json found below this folder (expected "
                             "{estimator}/coverage_{c}/[seed_{s}/]estimates.json)", path=str(results_dir))
    rows: list[dict] = []
    # Reading is fast (~1 ms a file); show progress only for large sweeps.
    for path in tqdm(paths, desc="reading estimates.json", unit="file", disable=len(paths) < 200):
        try:
            # an unfinished publication's new estimates.json sits in its staging folder (cje.results.files)
            payload = json.loads((current_set(path.parent)["estimates.json"] or path).read_text())
        except json.JSONDecodeError as exc:
            raise InputError(json_error_text(exc), path=str(path),
                             line=exc.lineno) from None
        try:
            validate_estimates(payload)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
            raise InputError(f"not a valid estimates.json: {exc.message}", path=str(path), field=where) from None
        source = path.relative_to(results_dir) if path.is_relative_to(results_dir) else path
        rows.extend(payload_rows(payload, source.as_posix()))
    return summary_frame(rows)


def pairwise_ranking_accuracy(estimates: np.ndarray, truths: np.ndarray) -> float:
    """Share of pairs (i < j) with truth_i != truth_j ordered like the truth by the estimates.

    A tie in the estimates scores 1/2. Non-finite entries are dropped first.

    Parameters
    ----------
    estimates : ndarray
        One estimate per policy.
    truths : ndarray
        The true values, aligned.

    Returns
    -------
    float
        NaN when no pair has distinct truths.
    """
    e, t = np.asarray(estimates, float), np.asarray(truths, float)
    keep = np.isfinite(e) & np.isfinite(t)
    e, t = e[keep], t[keep]
    i, j = np.triu_indices(e.size, k=1)
    dt, de = np.sign(t[i] - t[j]), np.sign(e[i] - e[j])
    valid = dt != 0
    if not valid.any():
        return float("nan")
    score = np.where(de[valid] == 0, 0.5, (de[valid] == dt[valid]).astype(float))
    return float(score.mean())


def _scored(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("truth").is_not_null() & pl.col("estimate").is_not_null())


def ranking_accuracy_by_seed(frame: pl.DataFrame) -> pl.DataFrame:
    """Pairwise ranking accuracy per (estimator, oracle_coverage, seed), vectorised as a self-join.

    Parameters
    ----------
    frame : polars.DataFrame
        The summary frame.

    Returns
    -------
    polars.DataFrame
        Columns estimator, oracle_coverage, seed, n_pairs, ranking_accuracy
        (groups with no pair of distinct truths are left out).
    """
    keys = [*_RUN, "seed"]
    s = _scored(frame).select(*keys, "policy", "estimate", "truth")
    pairs = (s.join(s, on=keys, suffix="_b").filter(pl.col("policy") < pl.col("policy_b"))
             .with_columns(dt=(pl.col("truth") - pl.col("truth_b")).sign(),
                           de=(pl.col("estimate") - pl.col("estimate_b")).sign())
             .filter(pl.col("dt") != 0)
             .with_columns(score=pl.when(pl.col("de") == 0).then(0.5)
                           .otherwise((pl.col("de") == pl.col("dt")).cast(pl.Float64))))
    return (pairs.group_by(keys).agg(pl.len().alias("n_pairs"), pl.col("score").mean().alias("ranking_accuracy"))
            .sort(keys))


def accuracy_by_policy(frame: pl.DataFrame) -> pl.DataFrame:
    """Per (estimator, oracle_coverage, policy): accuracy over the runs with a known truth and an estimate.

    Parameters
    ----------
    frame : polars.DataFrame
        The summary frame.

    Returns
    -------
    polars.DataFrame
        Columns n_runs, truth, mean_estimate, bias, rmse, ci_coverage, mean_ci_width,
        n_unreliable.
    """
    keys = [*_RUN, "policy"]
    return (_scored(frame).group_by(keys)
            .agg(pl.len().alias("n_runs"), pl.col("truth").mean(), pl.col("estimate").mean().alias("mean_estimate"),
                 pl.col("error").mean().alias("bias"), (pl.col("error") ** 2).mean().sqrt().alias("rmse"),
                 pl.col("in_ci").cast(pl.Float64).mean().alias("ci_coverage"),
                 (pl.col("ci_upper") - pl.col("ci_lower")).mean().alias("mean_ci_width"),
                 (~pl.col("reliable")).sum().cast(pl.Int64).alias("n_unreliable"))
            .sort(keys))


def accuracy_table(frame: pl.DataFrame) -> pl.DataFrame:
    """Per (estimator, oracle_coverage): the accuracy metrics of the module docstring.

    Parameters
    ----------
    frame : polars.DataFrame
        The summary frame.

    Returns
    -------
    polars.DataFrame
        Columns: estimator, oracle_coverage, n_seeds, n_policies, n_estimates, bias,
        mean_abs_bias, rmse, ci_coverage, ci_coverage_reliable (over reliable estimates
        only; null when none), mean_ci_width, share_reliable, ranking_accuracy (null
        when no seed has two policies with distinct truths). Empty when no truth is known.
    """
    scored = _scored(frame)
    overall = (scored.group_by(_RUN)
               .agg(pl.col("seed").n_unique().cast(pl.Int64).alias("n_seeds"),
                    pl.col("policy").n_unique().cast(pl.Int64).alias("n_policies"),
                    pl.len().cast(pl.Int64).alias("n_estimates"),
                    pl.col("error").mean().alias("bias"), (pl.col("error") ** 2).mean().sqrt().alias("rmse"),
                    pl.col("in_ci").cast(pl.Float64).mean().alias("ci_coverage"),
                    pl.col("in_ci").filter(pl.col("reliable")).cast(pl.Float64).mean().alias("ci_coverage_reliable"),
                    (pl.col("ci_upper") - pl.col("ci_lower")).mean().alias("mean_ci_width"),
                    pl.col("reliable").cast(pl.Float64).mean().alias("share_reliable")))
    per_policy = (accuracy_by_policy(frame).group_by(_RUN)
                  .agg(pl.col("bias").abs().mean().alias("mean_abs_bias")))
    ranking = (ranking_accuracy_by_seed(frame).group_by(_RUN)
               .agg(pl.col("ranking_accuracy").mean()))
    out = overall.join(per_policy, on=_RUN, how="left").join(ranking, on=_RUN, how="left")
    columns = [*_RUN, "n_seeds", "n_policies", "n_estimates", "bias", "mean_abs_bias", "rmse", "ci_coverage",
               "ci_coverage_reliable", "mean_ci_width", "share_reliable", "ranking_accuracy"]
    return out.select(columns).sort(_RUN)
