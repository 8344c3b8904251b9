"""The shared analysis context: one fold map, one calibration, one set of rewards.

Every estimator receives an :class:`AnalysisContext`; it never refits folds or
the calibration itself, so a fix lands once (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, TypeVar

import numpy as np

from cje.data.loaders import FreshDraws, LoggedData
from cje.errors import InputError
from cje.stats.calibration import Calibration, calibrate
from cje.stats.folds import assign_folds
from cje.stats.oracle_mask import OracleMask, mask_oracle_labels, select_probe_labels
from cje.stats.weights import SimcalResult, clip_weights, hajek_weights, simcal_weights

__all__ = ["AnalysisOptions", "FreshView", "AnalysisContext", "build_context", "index_in", "ByIdentity"]

T = TypeVar("T")


class ByIdentity:
    """A memo-key part that compares by identity and keeps its object alive.

    For objects that cannot be hashed (an outcome model with mutable state, a weights
    callable) or must not be compared by value (a result array): while the key sits in a
    cache its object cannot be collected, so its ``id`` is never reused by another object.

    Parameters
    ----------
    obj : object
        The object the key stands for.
    """

    __slots__ = ("obj",)

    def __init__(self, obj: object):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByIdentity) and other.obj is self.obj


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs shared by every estimator (defaults follow statistics.md).

    Parameters
    ----------
    n_folds : int, default=5
        Number K of cross-fitting folds.
    seed : int, default=0
        Seed of the fold map, the oracle mask and the probe selection.
    oracle_coverage : float, default=1.0
        Share of logged rows whose oracle label the analysis may use.
    calibration_mode : str, default='monotone'
        Judge -> oracle calibration mode (:func:`cje.stats.calibration.calibrate`).
    clip : float, default=100.0
        Clip of the raw-ips weights.
    rho : float, default=1.0
        SIMCal-W variance cap: Var(W_cal) <= rho * Var(W_raw).
    probe_coverage : float, default=0.0
        Share of each target's labelled fresh draws used as probe labels
        (:func:`cje.stats.oracle_mask.select_probe_labels`).
    transport_margin : float, default=0.05
        Margin of the transport audit.
    level : float, default=0.95
        Confidence level of the intervals.
    allow_missing_fresh_draws : bool, default=False
        Drop logged rows without fresh draws for a policy instead of raising.
    comparisons : 'base', 'all' or tuple of (str, str), default='base'
        Which paired comparisons the analysis writes: each target against the base plus
        the pairs the decision needs ('base'), every pair ('all', capped:
        :data:`cje.results.decision.MAX_ALL_PAIRS`), or those of 'base' and the given
        pairs (what ``cje plan --compare`` needs). Estimators never read it.
    """

    n_folds: int = 5
    seed: int = 0
    oracle_coverage: float = 1.0
    calibration_mode: str = "monotone"
    clip: float = 100.0
    rho: float = 1.0
    probe_coverage: float = 0.0
    transport_margin: float = 0.05
    level: float = 0.95
    allow_missing_fresh_draws: bool = False
    comparisons: str | tuple[tuple[str, str], ...] = "base"


def index_in(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Position of each query id in ``reference`` (unique ids), -1 when absent.

    A polars hash join: O(n) and no per-id Python lookups (a million ids in ~0.3 s).

    Parameters
    ----------
    query : array-like of str
        Ids to look up.
    reference : array-like of str
        Unique ids to look them up in.

    Returns
    -------
    ndarray of int64
        For each query id its position in ``reference``, or -1.
    """
    import polars as pl

    query = np.asarray(query, dtype=str)
    if len(reference) == 0:
        return np.full(query.size, -1)
    ref = pl.DataFrame({"id": np.asarray(reference, dtype=str)}).with_row_index("pos")
    found = pl.DataFrame({"id": query}).with_row_index("q").join(ref, on="id", how="left").sort("q")
    return found.get_column("pos").fill_null(-1).cast(pl.Int64).to_numpy()


@dataclass
class FreshView:
    """One target's fresh draws aligned with the logged rows.

    Parameters
    ----------
    policy : str
        The target policy.
    row : ndarray of int
        Per draw, the logged row index (-1 if the prompt was not logged: ignored).
    judge : ndarray
        Per draw, the judge score S'.
    oracle : ndarray
        Per draw, the oracle label (NaN when unlabelled).
    probe : ndarray of bool
        Per draw, whether its label is usable by the analysis (a probe label).
    R : ndarray
        Per draw, the calibrated value f(S').
    R_fold : ndarray of shape (K, n_draws)
        Per draw, f^(-k)(S').
    R_oof : ndarray
        Per draw, f^(-fold)(S'), the calibrator without the prompt's fold.
    n_draws : ndarray of int
        Per logged row, its number of draws.
    n_ignored_draws : int
        Draws of prompts that were not logged.
    n_ignored_prompts : int
        Distinct prompts of those ignored draws.
    """

    policy: str
    row: np.ndarray
    judge: np.ndarray
    oracle: np.ndarray
    probe: np.ndarray
    R: np.ndarray
    R_fold: np.ndarray
    R_oof: np.ndarray
    n_draws: np.ndarray
    n_ignored_draws: int
    n_ignored_prompts: int

    def row_mean(self, per_draw: np.ndarray) -> np.ndarray:
        """Mean of a per-draw array over each logged row's draws (NaN where a row has none).

        Parameters
        ----------
        per_draw : ndarray
            One value per draw, aligned with ``row``.

        Returns
        -------
        ndarray
            One value per logged row.
        """
        n = self.n_draws.size
        sums = np.bincount(self.row, weights=per_draw, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_draws > 0, sums / np.maximum(self.n_draws, 1), np.nan)

    @property
    def has_fresh(self) -> np.ndarray:
        """Per logged row: whether it has at least one fresh draw."""
        return self.n_draws > 0

    @property
    def truth_mask(self) -> np.ndarray:
        """Labelled draws the analysis did not use: ground truth."""
        return np.isfinite(self.oracle) & ~self.probe


@dataclass
class AnalysisContext:
    """Everything estimators share; built once per analysis by :func:`build_context`.

    Parameters
    ----------
    data : LoggedData
        The logged data.
    options : AnalysisOptions
        The analysis options.
    folds : ndarray of int
        The one fold map over the logged rows.
    mask : OracleMask
        Which oracle labels the analysis uses and which it holds out.
    calibration : Calibration
        The fitted judge -> oracle calibration.
    covariates : ndarray of shape (n, 1) or None
        Standardised log response length of each logged row (for the two-stage calibration);
        None when the lengths were not read (a monotone calibration does not use them).
    R : ndarray
        The rewards estimators average: f(S) below 100% oracle coverage, Y at 100%.
    R_oof : ndarray
        R out of fold (equal to R at 100%).
    R_fold : ndarray of shape (K, n)
        R recomputed with f^(-k) (equal to R at 100%).
    oua : bool
        Whether R carries a fitted calibrator (False at 100% coverage).
    fresh : dict of str to FreshView
        The fresh draws of each target that has them.
    f_oof, f_fold : ndarray or None
        The calibrator's own out-of-fold and per-fold predictions f^(oof)(S),
        f^(-k)(S) on every logged row, at every coverage (the label residuals Y - f^(oof)(S)
        of the transport audit and of tr-cpo's label term use them).
    """

    data: LoggedData
    options: AnalysisOptions
    folds: np.ndarray
    mask: OracleMask
    calibration: Calibration
    covariates: np.ndarray | None
    R: np.ndarray
    R_oof: np.ndarray
    R_fold: np.ndarray
    oua: bool
    fresh: dict[str, FreshView]
    f_oof: np.ndarray | None = None
    f_fold: np.ndarray | None = None
    _cache: dict = field(default_factory=dict)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per context: the estimate and its checks share every fit and reference.

        Everything cached is a pure function of the context (folds, calibration, weights, fresh
        draws and options are fixed once built), so a cached value is bit-for-bit what computing
        it again would give. Callers must not mutate what they get back.

        Parameters
        ----------
        key : hashable
            What is computed, e.g. ``("ips-uncorrected", "raw-ips", policy)``; a part that is
            not hashable by value goes in a :class:`ByIdentity`.
        compute : callable
            Computes the value when the key is new.

        Returns
        -------
        object
            The cached value.
        """
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def rewards_are_labels(self) -> bool:
        """True at 100% oracle coverage: R = Y on every scored logged row (no calibrator in R)."""
        return not self.oua

    @property
    def n_folds(self) -> int:
        """Number K of cross-fitting folds."""
        return self.options.n_folds

    @property
    def labelled(self) -> np.ndarray:
        """Per logged row: whether its oracle label is used (the coverage mask)."""
        return self.mask.used

    def rows(self, policy: str) -> np.ndarray:
        """Indices of the logged rows valid for ``policy`` (cached; do not modify).

        Parameters
        ----------
        policy : str
            A target policy.

        Returns
        -------
        ndarray of int
            Row indices, in order.
        """
        return self.memo(("rows", policy), lambda: np.flatnonzero(self.data.valid[policy]))

    def raw_weights(self, policy: str) -> np.ndarray:
        """Hajek weights over :meth:`rows` (cached).

        W_i = n exp(lr_i - max lr) / sum_j exp(lr_j - max lr), lr = lp_target - lp_base (mean 1).

        Parameters
        ----------
        policy : str
            A target policy.

        Returns
        -------
        ndarray
            One weight per row of :meth:`rows`.
        """
        rows = self.rows(policy)
        return self.memo(("raw", policy), lambda: hajek_weights(self.data.target_logprobs[policy][rows],
                                                                self.data.base_logprobs[rows]))

    def clipped_weights(self, policy: str) -> np.ndarray:
        """The Hajek weights clipped at ``options.clip`` and renormalised to mean 1 (cached; raw-ips).

        Parameters
        ----------
        policy : str
            A target policy.

        Returns
        -------
        ndarray
            One weight per row of :meth:`rows`.
        """
        return self.memo(("clipped", policy), lambda: clip_weights(self.raw_weights(policy), self.options.clip))

    def calibrated_weights(self, policy: str) -> SimcalResult:
        """SIMCal-W weights over :meth:`rows`, ordered by f^(oof)(S) (cached).

        Parameters
        ----------
        policy : str
            A target policy.

        Returns
        -------
        SimcalResult
            The calibrated weights and the record of how they were chosen
            (:func:`cje.stats.weights.simcal_weights`).
        """
        rows = self.rows(policy)
        return self.memo(("simcal", policy), lambda: simcal_weights(
            self.raw_weights(policy), self.data.judge_scores[rows], self.R[rows], self.folds[rows], self.n_folds,
            self.options.rho))

    def fresh_view(self, policy: str) -> FreshView:
        """The fresh draws of ``policy`` aligned with the logged rows.

        Parameters
        ----------
        policy : str
            A target policy.

        Returns
        -------
        FreshView
            The policy's draws aligned with the logged rows.

        Raises
        ------
        InputError
            The policy has no fresh draws; the message names the file expected in ``--fresh-draws-dir``.
        """
        if policy not in self.fresh:
            raise InputError(f"no fresh draws for policy '{policy}': pass --fresh-draws-dir DIR "
                             f"containing {policy}_responses.jsonl")
        return self.fresh[policy]


def _fresh_view(draws: FreshDraws, ctx_data: LoggedData, folds: np.ndarray, calibration: Calibration,
                options: AnalysisOptions, policy_index: int, covariates: np.ndarray | None,
                length_stats: tuple[float, float]) -> FreshView:
    row = index_in(draws.prompt_ids, ctx_data.prompt_ids)
    logged = row >= 0
    ignored_prompts = np.unique(draws.prompt_ids[~logged]).size
    row, judge, oracle = row[logged], draws.judge_scores[logged], draws.oracle_labels[logged]
    probe = (select_probe_labels(oracle, options.probe_coverage, options.seed + 104729 * policy_index)
             if options.probe_coverage > 0 else np.zeros(row.size, bool))
    draw_folds = folds[row]
    cov = None
    if calibration.uses_covariates:
        # the two-stage index uses standardised log response length; a draw without its
        # response text gets the logged prompt's covariate
        cov = covariates[row].copy()
        if draws.response_lengths is not None:
            lengths = draws.response_lengths[logged]
            known = np.isfinite(lengths)
            cov[known, 0] = (np.log1p(lengths[known]) - length_stats[0]) / length_stats[1]
    R = calibration.predict(judge, cov)
    R_fold = np.vstack([calibration.predict_fold(k, judge, cov) for k in range(options.n_folds)])
    R_oof = R_fold[draw_folds, np.arange(row.size)] if row.size else np.zeros(0)
    n_draws = np.bincount(row, minlength=ctx_data.n)
    return FreshView(policy=draws.policy, row=row, judge=judge, oracle=oracle, probe=probe, R=R,
                     R_fold=R_fold, R_oof=R_oof, n_draws=n_draws,
                     n_ignored_draws=int((~logged).sum()), n_ignored_prompts=int(ignored_prompts))


def build_context(data: LoggedData, fresh: dict[str, FreshDraws], options: AnalysisOptions) -> AnalysisContext:
    """Mask oracle labels, build the fold map, fit the calibration, compute rewards, align fresh draws.

    Rewards: R = f(S) for every logged row; at 100% oracle coverage with every row
    labelled, R = Y and the OUA jackknife is skipped (statistics.md 3, 6).

    Parameters
    ----------
    data : LoggedData
        The logged data.
    fresh : dict of str to FreshDraws
        Fresh draws per target policy (may be empty).
    options : AnalysisOptions
        Folds, seed, coverages and the other knobs.

    Returns
    -------
    AnalysisContext
        The shared folds, calibration, rewards and fresh-draw views of the analysis.
    """
    mask = mask_oracle_labels(data.oracle_labels, options.oracle_coverage, options.seed)
    scored = np.isfinite(data.judge_scores)
    labelled = mask.used & scored
    folds = assign_folds(data.prompt_ids, options.n_folds, options.seed, labelled=labelled)
    covariates, length_stats = None, (0.0, 1.0)
    if data.response_lengths is not None:
        loglen = np.log1p(data.response_lengths)
        sd = loglen.std() or 1.0
        covariates = ((loglen - loglen.mean()) / sd).reshape(-1, 1)
        length_stats = (float(loglen.mean()), float(sd))
    elif options.calibration_mode != "monotone":
        raise ValueError(f"calibration mode {options.calibration_mode!r} needs the response lengths: "
                         "load the data with response_lengths=True")
    calibration = calibrate(data.judge_scores, data.oracle_labels, labelled, folds, options.n_folds,
                            mode=options.calibration_mode, covariates=covariates)
    judge = np.where(scored, data.judge_scores, 0.0)
    R = calibration.predict(judge, covariates)
    R_fold = np.vstack([calibration.predict_fold(k, judge, covariates) for k in range(options.n_folds)])
    R_oof = R_fold[folds, np.arange(data.n)]
    f_fold, f_oof = R_fold.copy(), R_oof.copy()
    full_labels = bool(labelled[scored].all())
    if full_labels:
        R = np.where(scored, data.oracle_labels, R)
        R_fold = np.tile(R, (options.n_folds, 1))
        R_oof = R.copy()
    views = {}
    for i, policy in enumerate(data.target_policies):
        if policy in fresh:
            views[policy] = _fresh_view(fresh[policy], data, folds, calibration, options, i, covariates,
                                        length_stats)
    return AnalysisContext(data=data, options=options, folds=folds, mask=mask, calibration=calibration,
                           covariates=covariates, R=R, R_oof=R_oof, R_fold=R_fold, oua=not full_labels,
                           fresh=views, f_oof=f_oof, f_fold=f_fold)

