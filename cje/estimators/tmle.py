"""Targeted maximum likelihood (``tmle``), statistics.md 5.

Start from the cross-fitted outcome model Q = g (logged rows: g_i; fresh draws:
g^(-fold)(S')). Clever covariate h(S) = m(S) = E[W | S] (cross-fitted isotonic,
:func:`cje.estimators.outcome.cross_fit_weight_model`). Logistic fluctuation

    logit Q*_eps = logit Q + eps h(S),

with eps the root of  mean_i W_i (R_i - Q*_eps,i) = 0  (the score is strictly
decreasing in eps because W, h >= 0, so the root is unique; found by Brent's
method on a bracket). The same fluctuation is applied to every fresh draw, and

    psi = mean_i mean_j Q*(S'_ij)    (= mean Q*bar + mean W (R - Q*), the second term 0).

So TMLE is a DR estimator whose outcome model has been targeted: unbiased when
either Q or W is right, and -- unlike the reference implementation, whose
targeting never touched the fresh draws -- different from the untargeted direct
estimate mean Q(S') when Q is wrong. Influence per prompt:
phi_i = (Q*bar_i - mean Q*bar) + W_i (R_i - Q*_i) (van der Laan & Rose, 2011, ch. 4-5).
OUA jackknife: Q refitted on f^(-k) rewards and eps re-solved, per fold.

References
----------
van der Laan, M. J., & Rose, S. (2011). Targeted Learning: Causal Inference for
Observational and Experimental Data. Springer, ch. 4-5.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from cje.estimators.base import register
from cje.estimators.dr import DREstimatorBase, DRResult, _jackknife, _score_ci, assemble, family_assumptions
from cje.estimators.dr_inputs import DRInputs, model_key
from cje.estimators.outcome import CrossFit, OutcomeModel

__all__ = ["TMLEEstimator", "tmle", "solve_fluctuation", "Q_CLIP"]

Q_CLIP = 1e-4  # initial predictions are clipped to [Q_CLIP, 1 - Q_CLIP] before the logit


def solve_fluctuation(W: np.ndarray, R: np.ndarray, offset: np.ndarray, h: np.ndarray) -> float:
    """eps solving mean W (R - expit(offset + eps h)) = 0 (unique root; Brent on an expanding bracket).

    Parameters
    ----------
    W : ndarray
        Weights over the logged rows, >= 0.
    R : ndarray
        Rewards in [0, 1].
    offset : ndarray
        logit Q.
    h : ndarray
        The clever covariate, >= 0.

    Returns
    -------
    float
        The root, or the bracket end (|eps| = 1e6) when R sits on a boundary.
    """
    def score(eps: float) -> float:
        return float(np.mean(W * (R - expit(offset + eps * h))))

    lo, hi = -1.0, 1.0
    s_lo, s_hi = score(lo), score(hi)
    while s_lo < 0 and lo > -1e6:  # score decreasing: need score(lo) >= 0 >= score(hi)
        lo *= 4
        s_lo = score(lo)
    while s_hi > 0 and hi < 1e6:
        hi *= 4
        s_hi = score(hi)
    if s_lo < 0:
        return lo
    if s_hi > 0:
        return hi
    if s_lo == 0:
        return lo
    if s_hi == 0:
        return hi
    # imported when a fluctuation is solved: scipy.optimize costs half of an analysis's start-up,
    # and only tmle and stacked-dr need it
    from scipy.optimize import brentq

    return float(brentq(score, lo, hi, xtol=1e-12, rtol=1e-12, maxiter=200))


def _target(inp: DRInputs, Q: CrossFit, R: np.ndarray, h: CrossFit) -> tuple[float, CrossFit]:
    off_l = logit(np.clip(Q.logged, Q_CLIP, 1 - Q_CLIP))
    off_f = logit(np.clip(Q.fresh, Q_CLIP, 1 - Q_CLIP))
    eps = solve_fluctuation(inp.W, R, off_l, h.logged)
    return eps, CrossFit(logged=expit(off_l + eps * h.logged), fresh=expit(off_f + eps * h.fresh))


def tmle(inp: DRInputs, model: OutcomeModel) -> DRResult:
    """TMLE on prepared inputs (cached per model on ``inp``); details record the untargeted and targeted
    direct parts and eps.

    psi = mean Q*bar + mean W (R - Q*), logit Q* = logit Q + eps h(S) (module docstring);
    initial predictions are clipped to [Q_CLIP, 1 - Q_CLIP] before the logit.

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    model : OutcomeModel
        The initial outcome model Q.

    Returns
    -------
    DRResult
        The targeted component; its details record eps and the untargeted parts.

    References
    ----------
    van der Laan, M. J., & Rose, S. (2011). Targeted Learning: Causal Inference for
    Observational and Experimental Data. Springer.
    """
    return inp.memo(("tmle", model_key(model)), lambda: _tmle(inp, model))


def _tmle(inp: DRInputs, model: OutcomeModel) -> DRResult:
    h = inp.weight_model()
    Q = inp.outcome(model)
    eps, Q_star = _target(inp, Q, inp.R, h)
    psi, phi, parts = assemble(inp, Q_star, inp.R)

    def psi_k(k: int) -> float:
        R_k = inp.R_fold[k]
        return assemble(inp, _target(inp, inp.outcome(model, k), R_k, h)[1], R_k)[0]

    jack = _jackknife(inp, psi_k)
    details = {"direct_part": parts["direct_part"], "weighted_correction": parts["weighted_correction"],
               "direct_part_untargeted": float(inp.row_mean(Q.fresh).mean()),
               "fluctuation_epsilon": eps,
               "orthogonality_score": _score_ci(inp.W * (inp.R - Q_star.logged)),
               "orthogonality_score_untargeted": _score_ci(inp.W * (inp.R - Q.logged)),
               "clever_covariate": "m(S) = E[W | S], cross-fitted isotonic",
               "outcome_model": getattr(model, "name", type(model).__name__)}
    gap = float(np.max(np.abs(inp.R - Q.logged))) if inp.n else 0.0
    details["max_abs_reward_minus_outcome"] = gap
    rests_on, notes = family_assumptions(inp, gap, inp.W * (inp.R - Q_star.logged), phi)
    return DRResult(psi, phi, jack, details, rests_on, inp.W * (inp.R - Q_star.logged), notes)


@register
class TMLEEstimator(DREstimatorBase):
    """tmle: the outcome model targeted by a logistic fluctuation, applied to the fresh draws.

    Parameters
    ----------
    outcome_model : OutcomeModel or None, default=None
        The initial outcome model Q (default cross-fitted isotonic of R on S).
    weights : str or callable, default='calibrated'
        As in :class:`~cje.estimators.dr.DREstimatorBase`.
    """

    name = "tmle"

    def compute(self, inp: DRInputs) -> DRResult:
        """TMLE on prepared inputs (:func:`tmle`).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            The tmle component.
        """
        return tmle(inp, self.outcome_model)
