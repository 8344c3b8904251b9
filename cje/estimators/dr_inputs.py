"""Aligned inputs of the doubly robust family: one policy's used rows, weights and fresh draws.

Used rows U: valid for the policy, scored, with fresh draws (a prompt without fresh
draws is an error unless ``allow_missing_fresh_draws``; see
:func:`cje.estimators.direct.fresh_rows`). Everything an estimator of the family
needs is restricted to U once, here, and cached on the context per weight source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, TypeVar, Union

import numpy as np

from cje.estimators.context import AnalysisContext, ByIdentity, FreshView
from cje.estimators.direct import fresh_rows
from cje.estimators.outcome import CrossFit, FoldPlan, OutcomeModel, cross_fit, cross_fit_weight_model, fold_plan
from cje.stats.weights import WeightError

__all__ = ["DRInputs", "prepare_dr", "WeightSource", "model_key"]

WeightSource = Union[str, Callable[[AnalysisContext, str], np.ndarray]]
T = TypeVar("T")


def model_key(model: object) -> Hashable:
    """The memo-key part of an outcome model: the model itself when it hashes (equal frozen
    models, such as the default isotonic one, then share fits across estimators), else its
    identity (:class:`~cje.estimators.context.ByIdentity`).

    Parameters
    ----------
    model : object
        An outcome model.

    Returns
    -------
    hashable
        ``model`` or ``ByIdentity(model)``.
    """
    try:
        hash(model)
    except TypeError:
        return ByIdentity(model)
    return model


@dataclass
class DRInputs:
    """One policy's aligned arrays over the used rows U (n_u of them) and its fresh draws.

    Parameters
    ----------
    ctx : AnalysisContext
        The shared analysis context.
    policy : str
        The target policy.
    view : FreshView
        Its fresh draws.
    rows : ndarray of int
        Logged row indices U.
    S : ndarray
        Over U: the judge scores.
    R : ndarray
        Over U: the reward, f(S), or Y at 100% coverage.
    R_fold : ndarray of shape (K, n_u)
        R with f^(-k).
    R_oof : ndarray
        R out of fold.
    folds : ndarray of int
        The fold of each row of U.
    W : ndarray
        The correction weights, mean 1 (SIMCal-W by default).
    W_raw : ndarray
        The Hajek weights, mean 1.
    L : ndarray of bool
        Labelled rows.
    Y : ndarray
        Oracle labels, 0 where unlabelled.
    f_oof, f_fold : ndarray
        The calibrator out of fold / per fold (K x n_u), at every coverage.
    fpos : ndarray of int
        Per fresh draw: its position in U.
    fS : ndarray
        Per fresh draw: its judge score.
    ffolds : ndarray of int
        Per fresh draw: its prompt's fold.
    n_draws : ndarray of int
        Per row of U: its number of fresh draws.
    dropped : dict
        {reason: count} of rows dropped for the policy (:func:`cje.estimators.direct.fresh_rows`).
    weights_source : str
        'calibrated', 'raw', 'clipped' or the name of the weights callable.
    cache : dict
        What :meth:`memo` computed: fitted outcome and weight models (keyed by model, fold and
        omega) and the DR components (:mod:`cje.estimators.dr`), so that the estimators of one
        context and stacked-dr share them.
    """

    ctx: AnalysisContext
    policy: str
    view: FreshView
    rows: np.ndarray
    S: np.ndarray
    R: np.ndarray
    R_fold: np.ndarray
    R_oof: np.ndarray
    folds: np.ndarray
    W: np.ndarray
    W_raw: np.ndarray
    L: np.ndarray
    Y: np.ndarray
    f_oof: np.ndarray
    f_fold: np.ndarray
    fpos: np.ndarray
    fS: np.ndarray
    ffolds: np.ndarray
    n_draws: np.ndarray
    dropped: dict
    weights_source: str
    cache: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number n_u of used rows."""
        return int(self.rows.size)

    def row_mean(self, per_draw: np.ndarray) -> np.ndarray:
        """Average a per-draw array over each used prompt's fresh draws.

        Parameters
        ----------
        per_draw : ndarray
            One value per fresh draw (aligned with ``fpos``).

        Returns
        -------
        ndarray
            One value per used row.
        """
        return np.bincount(self.fpos, weights=per_draw, minlength=self.n) / self.n_draws

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per policy and weight source (these inputs are fixed once prepared).

        Parameters
        ----------
        key : hashable
            What is computed (a part not hashable by value goes in a
            :class:`~cje.estimators.context.ByIdentity`).
        compute : callable
            Computes the value when the key is new.

        Returns
        -------
        object
            The cached value; callers must not modify it.
        """
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def outcome(self, model: OutcomeModel, k: int | None = None, omega: str | None = None) -> CrossFit:
        """Cross-fitted outcome model on R (k None) or on f^(-k) rewards R_fold[k] (cached).

        Equal frozen models (the default isotonic one) share fits across estimators.

        Parameters
        ----------
        model : OutcomeModel
            The outcome model g.
        k : int or None, default=None
            None: fit on R; else fit on R_fold[k].
        omega : {None, 'w', 'w2'}, default=None
            None (unweighted), 'w' (sample weights W) or 'w2' (W^2).

        Returns
        -------
        CrossFit
            The outcome model g on the used rows and on the fresh draws.
        """
        def fit() -> CrossFit:
            targets = self.R if k is None else self.R_fold[k]
            sw = None if omega is None else (self.W if omega == "w" else self.W ** 2)
            return cross_fit(model, self.S, targets, self.folds, self.ctx.n_folds, self.fS, self.ffolds,
                             sample_weight=sw, plan=self.fold_plan())

        return self.memo(("outcome", model_key(model), k, omega), fit)

    def weight_model(self, raw: bool = False) -> CrossFit:
        """m(S) = E[W | S] (or E[W_raw | S] with ``raw``), cross-fitted monotone regression (cached).

        Parameters
        ----------
        raw : bool, default=False
            Regress the Hajek weights W_raw instead of W.

        Returns
        -------
        CrossFit
            The weight model m on the used rows and on the fresh draws (>= 0).
        """
        return self.memo(("m", raw), lambda: cross_fit_weight_model(self.S, self.W_raw if raw else self.W, self.folds,
                                                                    self.ctx.n_folds, self.fS, self.ffolds,
                                                                    plan=self.fold_plan()))

    def fold_plan(self) -> FoldPlan:
        """The folds of the used rows and fresh draws, split and grouped once for every
        cross-fitted model of the policy (:func:`cje.estimators.outcome.fold_plan`; cached).

        Returns
        -------
        FoldPlan
            Per fold: the training, test and fresh-draw masks and the grouped training scores.
        """
        return self.memo("fold-plan", lambda: fold_plan(self.S, self.folds, self.ctx.n_folds, self.ffolds))


def _weights(ctx: AnalysisContext, policy: str, source: WeightSource) -> tuple[np.ndarray, str]:
    if callable(source):
        return np.asarray(source(ctx, policy), float), getattr(source, "__name__", "custom")
    if source == "calibrated":
        return ctx.calibrated_weights(policy).weights, source
    if source == "raw":
        return ctx.raw_weights(policy), source
    if source == "clipped":
        return ctx.clipped_weights(policy), source
    raise ValueError(f"unknown weight source {source!r}; use 'calibrated', 'raw', 'clipped' or a callable")


def _mean_one(w: np.ndarray, policy: str, what: str) -> np.ndarray:
    if w.size < 2 or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise WeightError(f"policy '{policy}': {w.size} usable rows with fresh draws; the {what} weights "
                          "over them are empty, zero or non-finite")
    return w / w.mean()


def prepare_dr(ctx: AnalysisContext, policy: str, weights: WeightSource = "calibrated") -> DRInputs:
    """Align logged rows, weights and fresh draws of ``policy`` (cached per weight source).

    The weights are restricted to the used rows and renormalised to mean 1.

    Parameters
    ----------
    ctx : AnalysisContext
        The shared analysis context.
    policy : str
        The target policy.
    weights : str or callable, default='calibrated'
        'calibrated' (SIMCal-W), 'raw', 'clipped', or a callable
        ``(ctx, policy) -> array over ctx.rows(policy)``.

    Returns
    -------
    DRInputs
        The aligned arrays over the used rows U and the fresh draws.

    Raises
    ------
    WeightError
        The weights are unusable: the wrong length, or empty, zero or non-finite over the used rows.
    InputError
        Fresh draws are missing (:func:`cje.estimators.direct.fresh_rows`).
    ValueError
        ``weights`` is an unknown name.
    """
    return ctx.memo(("dr-inputs", policy, weights if isinstance(weights, str) else ByIdentity(weights)),
                    lambda: _prepare(ctx, policy, weights))


def _prepare(ctx: AnalysisContext, policy: str, weights: WeightSource) -> DRInputs:
    view, fresh_ok, dropped = fresh_rows(ctx, policy)
    valid = ctx.rows(policy)
    W_all, source = _weights(ctx, policy, weights)
    if W_all.shape != valid.shape:
        raise WeightError(f"weights for '{policy}' have {W_all.size} entries, expected {valid.size} "
                          "(one per row valid for the policy)")
    has = np.zeros(ctx.data.n, bool)
    has[fresh_ok] = True
    keep = has[valid]
    rows = valid[keep]
    W = _mean_one(W_all[keep], policy, source)
    W_raw = _mean_one(ctx.raw_weights(policy)[keep], policy, "raw")
    pos = np.full(ctx.data.n, -1)
    pos[rows] = np.arange(rows.size)
    fpos = pos[view.row]
    sel = fpos >= 0
    labelled = ctx.labelled[rows] & np.isfinite(ctx.data.oracle_labels[rows])
    inputs = DRInputs(ctx=ctx, policy=policy, view=view, rows=rows, S=ctx.data.judge_scores[rows],
                      R=ctx.R[rows], R_fold=ctx.R_fold[:, rows], R_oof=ctx.R_oof[rows],
                      folds=ctx.folds[rows], W=W, W_raw=W_raw, L=labelled,
                      Y=np.where(labelled, ctx.data.oracle_labels[rows], 0.0),
                      f_oof=ctx.f_oof[rows], f_fold=ctx.f_fold[:, rows], fpos=fpos[sel],
                      fS=view.judge[sel], ffolds=ctx.folds[view.row[sel]],
                      n_draws=np.bincount(fpos[sel], minlength=rows.size), dropped=dropped,
                      weights_source=source)
    return inputs
