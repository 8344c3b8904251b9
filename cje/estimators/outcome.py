"""Nuisance models of the doubly robust family, all cross-fitted on the one fold map.

* Outcome model g(S) ~ E[R | S]: the one interface every DR estimator uses
  (:class:`OutcomeModel`). Default :class:`IsotonicOutcomeModel`: isotonic
  regression of the calibrated reward R on the judge score S (increasing,
  values in [0, 1]). Isotonic regression is invariant to increasing transforms
  of its covariate, so this is the same fit as on the monotone calibrated score
  f(S), without the ties f creates. Optional sample weights (MRDR).
  :class:`ConstantOutcomeModel` is a deliberately crude model (for
  double-robustness checks and as a baseline).
* Weight model m(S) = E[W | S] (:func:`cross_fit_weight_model`): isotonic of W on
  S, direction chosen per fold by the lower training error. Used as the TMLE
  clever covariate and in the oc-dr-cpo term.

Cross-fitting: for fold k the model is fitted on the logged rows outside fold k
and applied to fold k's logged rows and to the fresh draws of fold k's prompts
(statistics.md 2 and 5). Loops run over the K folds, never over rows.

References
----------
Barlow, R. E., Bartholomew, D. J., Bremner, J. M., & Brunk, H. D. (1972). Statistical
Inference under Order Restrictions. Wiley (isotonic regression, PAVA).
Farajtabar, M., Chow, Y., & Ghavamzadeh, M. (2018). More robust doubly robust off-policy
evaluation. ICML 2018 (MRDR).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from cje.stats.calibration import StepFunction, ValueGroups, fit_isotonic, group_values

__all__ = ["isotonic_step", "OutcomeModel", "IsotonicOutcomeModel", "ConstantOutcomeModel", "CrossFit", "cross_fit",
           "cross_fit_weight_model", "FoldPlan", "fold_plan"]

Predictor = Callable[[np.ndarray], np.ndarray]


def isotonic_step(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
                  increasing: bool = True, y_min: float | None = None,
                  y_max: float | None = None, groups: ValueGroups | None = None) -> StepFunction:
    """Weighted isotonic regression of y on x (:func:`cje.stats.calibration.fit_isotonic`, no default bounds).

    Minimises sum_i w_i (y_i - g(x_i))^2 over monotone g (increasing or decreasing),
    optionally clipped to [y_min, y_max]; the same fit and predictions as scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")``.

    Parameters
    ----------
    x : ndarray
        The covariate.
    y : ndarray
        The response.
    sample_weight : ndarray or None, default=None
        Non-negative weights (None = equal).
    increasing : bool, default=True
        Direction of the fit.
    y_min, y_max : float or None, default=None
        Bounds of the predictions (None = unbounded).
    groups : ValueGroups or None, default=None
        :func:`cje.stats.calibration.group_values` of ``x``, when several fits share it.

    Returns
    -------
    StepFunction
        The fitted step function; call it on an array of x.

    References
    ----------
    Barlow, R. E., Bartholomew, D. J., Bremner, J. M., & Brunk, H. D. (1972). Statistical
    Inference under Order Restrictions. Wiley.
    Pedregosa, F., et al. (2011). Scikit-learn: Machine learning in Python. JMLR, 12, 2825-2830.
    """
    return fit_isotonic(x, y, increasing=increasing, sample_weight=sample_weight, y_min=y_min, y_max=y_max,
                        groups=groups)


class OutcomeModel(Protocol):
    """An outcome model: ``fit(scores, targets, sample_weight) -> predictor``.

    ``scores`` are judge scores S of the training rows, ``targets`` their calibrated
    rewards R, ``sample_weight`` optional non-negative weights (None = equal).
    The returned callable maps an array of scores to predictions of E[R | S].
    ``name`` is recorded in the output. A model whose ``fit`` also takes a ``groups`` keyword
    (the isotonic ones) is given the training scores grouped by value
    (:func:`cje.stats.calibration.group_values`), computed once per fold for every fit.

    Attributes
    ----------
    name : str
        The model's name in the output.
    """

    name: str

    def fit(self, scores: np.ndarray, targets: np.ndarray,
            sample_weight: np.ndarray | None = None) -> Predictor:
        """Fit E[R | S] on training rows.

        Parameters
        ----------
        scores : ndarray
            Judge scores S of the training rows.
        targets : ndarray
            Their calibrated rewards R.
        sample_weight : ndarray or None, default=None
            Optional non-negative weights (None = equal).

        Returns
        -------
        callable
            Maps an array of scores to predictions of E[R | S].
        """
        ...


@dataclass(frozen=True)
class IsotonicOutcomeModel:
    """Increasing isotonic regression of R on S, predictions in [0, 1] (the default).

    Parameters
    ----------
    name : str, default='isotonic'
        The model's name in the output.
    """

    name: str = "isotonic"

    def fit(self, scores, targets, sample_weight=None, groups: ValueGroups | None = None) -> Predictor:
        """Fit the increasing isotonic regression of ``targets`` on ``scores``, bounded to [0, 1].

        Parameters
        ----------
        scores : ndarray
            Judge scores S of the training rows.
        targets : ndarray
            Their rewards R.
        sample_weight : ndarray or None, default=None
            Optional non-negative weights (MRDR).
        groups : ValueGroups or None, default=None
            ``scores`` grouped by value, when several fits share it.

        Returns
        -------
        StepFunction
            Predictions of E[R | S].
        """
        return isotonic_step(scores, targets, sample_weight=sample_weight, y_min=0.0, y_max=1.0, groups=groups)


@dataclass(frozen=True)
class ConstantOutcomeModel:
    """A constant outcome model that ignores S.

    g(S) = ``value`` (a fixed, deliberately wrong model) or, when ``value`` is None,
    the (weighted) training mean of R.

    Parameters
    ----------
    value : float or None, default=None
        The constant; None for the (weighted) training mean.
    name : str, default='constant'
        The model's name in the output.
    """

    value: float | None = None
    name: str = "constant"

    def fit(self, scores, targets, sample_weight=None) -> Predictor:
        """Fit the constant: ``value``, or the (weighted) mean of ``targets``.

        Parameters
        ----------
        scores : ndarray
            Judge scores of the training rows (ignored).
        targets : ndarray
            Their rewards R.
        sample_weight : ndarray or None, default=None
            Weights of the mean (None = equal).

        Returns
        -------
        callable
            Maps an array of scores to an array of the constant, same shape.
        """
        c = self.value if self.value is not None else float(np.average(targets, weights=sample_weight))
        return lambda s: np.full(np.shape(s), c, dtype=float)


@dataclass
class CrossFit:
    """Out-of-fold predictions of one cross-fitted model.

    Parameters
    ----------
    logged : ndarray
        Prediction for each logged row from the model not trained on its fold.
    fresh : ndarray
        Prediction for each fresh draw from the model of its prompt's fold.
    """

    logged: np.ndarray
    fresh: np.ndarray


@dataclass(frozen=True)
class FoldPlan:
    """The rows of each fold of a cross-fit, prepared once for every model fitted on them.

    Parameters
    ----------
    parts : list of tuple or None
        Per fold k: (training mask, test mask, fresh-draw test mask, the training scores
        grouped by value), or None when fold k has neither logged rows nor fresh draws.
    """

    parts: list


def fold_plan(scores: np.ndarray, folds: np.ndarray, n_folds: int, fresh_folds: np.ndarray) -> FoldPlan:
    """Split the rows by fold and group each fold's training scores once (:class:`FoldPlan`).

    The outcome model, its K jackknife refits, the MRDR fits and the weight models of one
    policy are all cross-fitted on the same scores and folds: they share one plan.
    A fold whose complement has fewer than 2 rows trains on all rows.

    Parameters
    ----------
    scores, folds : ndarray
        The logged rows' scores and folds (aligned).
    n_folds : int
        Number K of folds.
    fresh_folds : ndarray of int
        The fold of each fresh draw's prompt.

    Returns
    -------
    FoldPlan
        The per-fold masks and groupings.
    """
    parts = []
    for k in range(n_folds):
        test, ftest = folds == k, fresh_folds == k
        if not (test.any() or ftest.any()):
            parts.append(None)
            continue
        train = ~test if (~test).sum() >= 2 else np.ones(scores.size, bool)
        parts.append((train, test, ftest, group_values(scores[train])))
    return FoldPlan(parts)


@functools.lru_cache(maxsize=None)
def _takes_groups(model_type: type) -> bool:
    """Whether ``model_type.fit`` accepts the ``groups`` keyword (checked once per class)."""
    try:
        return "groups" in inspect.signature(model_type.fit).parameters
    except (TypeError, ValueError):  # a fit without an inspectable signature
        return False


def cross_fit(model: OutcomeModel, scores: np.ndarray, targets: np.ndarray, folds: np.ndarray,
              n_folds: int, fresh_scores: np.ndarray, fresh_folds: np.ndarray,
              sample_weight: np.ndarray | None = None, plan: FoldPlan | None = None) -> CrossFit:
    """Fit ``model`` K times (without fold k) and predict fold k's logged rows and fresh draws.

    A fold whose complement is empty falls back to a fit on all rows.

    Parameters
    ----------
    model : OutcomeModel
        The model to fit.
    scores, targets, folds : ndarray
        The logged rows (aligned).
    n_folds : int
        Number K of folds.
    fresh_scores : ndarray
        Judge scores of the fresh draws.
    fresh_folds : ndarray of int
        The fold of each fresh draw's prompt.
    sample_weight : ndarray or None, default=None
        Optional weights of the logged rows.
    plan : FoldPlan or None, default=None
        :func:`fold_plan` of these scores and folds, when several models share it.

    Returns
    -------
    CrossFit
        The out-of-fold predictions on the logged rows and the fresh draws.
    """
    plan = plan or fold_plan(scores, folds, n_folds, fresh_folds)
    grouped = _takes_groups(type(model))
    logged = np.empty(scores.size)
    fresh = np.empty(fresh_scores.size)
    for part in plan.parts:
        if part is None:
            continue
        train, test, ftest, groups = part
        sw = None if sample_weight is None else sample_weight[train]
        if grouped:
            predict = model.fit(scores[train], targets[train], sw, groups=groups)
        else:
            predict = model.fit(scores[train], targets[train], sw)
        logged[test] = predict(scores[test])
        fresh[ftest] = predict(fresh_scores[ftest])
    return CrossFit(logged=logged, fresh=fresh)


def _monotone_weight_fit(scores: np.ndarray, weights: np.ndarray, groups: ValueGroups | None = None) -> Predictor:
    """Isotonic E[W | S], increasing or decreasing, whichever has the lower training SSE."""
    best, best_sse = None, np.inf
    groups = groups or group_values(scores)
    for increasing in (True, False):
        fit = isotonic_step(scores, weights, increasing=increasing, y_min=0.0, groups=groups)
        sse = float(np.sum((weights - fit(scores)) ** 2))
        if sse < best_sse:
            best, best_sse = fit, sse
    return best


class _WeightModel:
    name = "isotonic-weight"

    def fit(self, scores, targets, sample_weight=None, groups: ValueGroups | None = None) -> Predictor:
        return _monotone_weight_fit(scores, targets, groups)


def cross_fit_weight_model(scores: np.ndarray, weights: np.ndarray, folds: np.ndarray, n_folds: int,
                           fresh_scores: np.ndarray, fresh_folds: np.ndarray, plan: FoldPlan | None = None) -> CrossFit:
    """m(S) = E[W | S], cross-fitted monotone (isotonic) regression of the weights on S.

    The direction (increasing or decreasing) is chosen per fold on the training
    rows, by the lower training SSE.

    Parameters
    ----------
    scores : ndarray
        Judge scores of the logged rows.
    weights : ndarray
        Their importance weights W.
    folds : ndarray of int
        Their folds.
    n_folds : int
        Number K of folds.
    fresh_scores : ndarray
        Judge scores of the fresh draws.
    fresh_folds : ndarray of int
        The fold of each fresh draw's prompt.
    plan : FoldPlan or None, default=None
        :func:`fold_plan` of these scores and folds, when several models share it.

    Returns
    -------
    CrossFit
        The weight model m on logged rows and on fresh draws, >= 0.
    """
    return cross_fit(_WeightModel(), scores, weights, folds, n_folds, fresh_scores, fresh_folds, plan=plan)
