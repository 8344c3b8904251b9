"""The public Python API: ``cje.analyze(...)`` -> :class:`cje.api.result.Result`.

``cje analyze`` (the CLI) is a thin layer over :func:`analyze`; both run the one
analysis (:func:`cje.analysis.run.run_analysis` for a file with the standard fields,
:func:`cje.analysis.run.analyze_loaded` otherwise), so the numbers are identical. See
docs/api.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cje.analysis.run import AnalysisConfig, analyze_loaded, run_analysis, validate_config
from cje.api.result import Result
from cje.data.frames import FieldMap, load_fresh, load_logged
from cje.estimators.context import AnalysisOptions

__all__ = ["analyze", "resolve_estimator"]


def resolve_estimator(name: str, has_fresh_draws: bool) -> str:
    """Resolve ``'auto'`` to an estimator name.

    ``'auto'`` -> ``'direct'`` with fresh draws (no importance weights needed), else
    ``'calibrated-ips'``; any other name is returned unchanged (checked by the analysis).

    Parameters
    ----------
    name : str
        An estimator name or ``'auto'``.
    has_fresh_draws : bool
        Whether fresh draws were given.

    Returns
    -------
    str
        The estimator name to run.
    """
    if name == "auto":
        return "direct" if has_fresh_draws else "calibrated-ips"
    return name


def analyze(data: Any, fresh_draws: Any = None, estimator: str = "auto", oracle_coverage: float = 1.0,
            seed: int = 0, *, probe_coverage: float = 0.0, n_folds: int = 5, calibration: str = "monotone",
            clip: float = 100.0, rho: float = 1.0, transport_margin: float = 0.05, level: float = 0.95,
            refuse_unreliable: bool = False, allow_missing_fresh_draws: bool = False,
            comparisons: str | list[tuple[str, str]] = "base",
            judge_field: str = "judge_score", oracle_field: str = "oracle_label",
            prompt_id_field: str = "prompt_id", base_logprob_field: str = "base_policy_logprob",
            target_logprob_fields: dict[str, str] | None = None, policy_field: str = "policy",
            judge_scale: tuple[float, float] | None = None,
            oracle_scale: tuple[float, float] | None = None) -> Result:
    """Estimate each target policy's value with honest CIs, from a file or a DataFrame.

    Parameters
    ----------
    data : str, Path, polars.DataFrame or pandas.DataFrame
        Path of a logged-data JSONL or Parquet file (told apart by its first bytes), or a
        polars / pandas DataFrame with one row per
        logged (base-policy) response: ``prompt``, ``response``, ``base_policy_logprob``,
        ``target_policy_logprobs`` ({policy: log-prob} object; or one column per target,
        see ``target_logprob_fields``), ``judge_score``, optional ``oracle_label``,
        ``prompt_id`` (fields may also sit under ``metadata``, as in the pipeline's files).
    fresh_draws : None, str, Path, dict or DataFrame, default=None
        None, a folder of ``{policy}_responses.jsonl`` (or ``.parquet``), a ``{policy: DataFrame}``
        dict, or one long DataFrame with a ``policy`` column (``policy_field``); rows have
        ``prompt_id``, ``judge_score``, optional ``draw_idx`` and ``oracle_label``.
    estimator : str, default='auto'
        An estimator name (``naive``, ``direct``, ``raw-ips``, ``calibrated-ips``,
        ``dr-cpo``, ... docs/estimators.md) or ``'auto'`` (:func:`resolve_estimator`).
    oracle_coverage : float, default=1.0
        Share of logged rows whose oracle label calibration may use (0, 1].
    seed : int, default=0
        Seed of the coverage mask, the folds and the probe selection.
    probe_coverage : float, default=0.0
        As the ``cje analyze`` flag ``--probe-coverage``.
    n_folds : int, default=5
        As ``--n-folds``.
    calibration : {'monotone', 'two_stage', 'auto'}, default='monotone'
        As ``--calibration``.
    clip : float, default=100.0
        As ``--clip``.
    rho : float, default=1.0
        As ``--rho``.
    transport_margin : float, default=0.05
        As ``--transport-margin``.
    level : float, default=0.95
        As ``--level``.
    refuse_unreliable : bool, default=False
        As ``--refuse-unreliable``.
    allow_missing_fresh_draws : bool, default=False
        As ``--allow-missing-fresh-draws``.
    comparisons : 'base', 'all' or list of (str, str), default='base'
        As ``--comparisons``: the paired comparisons ``result.compare`` can read. 'base':
        each target against the base and the best against each other candidate (what
        ``best_policy`` needs); 'all': every pair (refused above
        :data:`cje.results.decision.MAX_ALL_PAIRS` pairs); a list of pairs: those of 'base'
        and these.
    judge_field, oracle_field, prompt_id_field, base_logprob_field : str
        The user's column names of those fields.
    target_logprob_fields : dict of str to str or None, default=None
        {policy: column} when each target's log-prob is its own column.
    policy_field : str, default='policy'
        The policy column of a long fresh-draws DataFrame.
    judge_scale, oracle_scale : (float, float) or None, default=None
        (low, high) of a scale other than [0, 1]; values are mapped to
        (x - low) / (high - low), and a value outside [low, high] is an error.

    Returns
    -------
    Result
        :class:`cje.api.result.Result`.

    Raises
    ------
    ConfigError
        A bad option, before any estimate is computed.
    InputError
        Bad data, naming the file and line or the DataFrame row, and the field, before any
        estimate is computed.
    """

    fields = FieldMap(judge=judge_field, oracle=oracle_field, prompt_id=prompt_id_field,
                      base_logprob=base_logprob_field, target_logprobs=target_logprob_fields,
                      policy=policy_field, judge_scale=judge_scale, oracle_scale=oracle_scale)
    options = AnalysisOptions(n_folds=n_folds, seed=seed, oracle_coverage=oracle_coverage,
                              calibration_mode=calibration, clip=clip, rho=rho, probe_coverage=probe_coverage,
                              transport_margin=transport_margin, level=level,
                              allow_missing_fresh_draws=allow_missing_fresh_draws,
                              comparisons=tuple(tuple(c) if isinstance(c, list) else c for c in comparisons)
                              if isinstance(comparisons, list) else comparisons)
    estimator = resolve_estimator(estimator, fresh_draws is not None)
    files = isinstance(data, (str, Path)) and (fresh_draws is None or isinstance(fresh_draws, (str, Path)))
    if files and fields.is_standard:  # exactly what `cje analyze` runs
        config = AnalysisConfig(data=str(data), estimator=estimator,
                                fresh_draws_dir=None if fresh_draws is None else str(fresh_draws),
                                options=options, refuse_unreliable=refuse_unreliable)
        return Result(run_analysis(config), refuse_unreliable=refuse_unreliable)

    validate_config(AnalysisConfig(data="<memory>", estimator=estimator, options=options,
                                   fresh_draws_dir=None if fresh_draws is None else "<memory>"))
    with tempfile.TemporaryDirectory(prefix="cje-api-") as tmp:
        lengths = options.calibration_mode != "monotone"  # only two-stage reads response lengths
        logged = load_logged(data, fields, Path(tmp), response_lengths=lengths)
        fresh = load_fresh(fresh_draws, logged.target_policies, fields, Path(tmp), response_lengths=lengths)
    result = analyze_loaded(logged, fresh, estimator, options, refuse_unreliable)
    result.metadata["inputs"] = {"data": logged.path,
                                 "fresh_draws_dir": str(fresh_draws) if isinstance(fresh_draws, (str, Path))
                                 else (None if fresh_draws is None else "<DataFrame>")}
    return Result(result, refuse_unreliable=refuse_unreliable)
