"""``stacked-dr``: the minimum-variance convex combination of the DR family (statistics.md 5-6).

Components J = {dr-cpo, tmle, mrdr, oc-dr-cpo, tr-cpo}, all computed on the same
used rows, fold map, weights and outcome model (so their influence functions
are aligned by prompt_id by construction). With Phi the n x J matrix of
per-prompt influence values and Psi^(-k) the K x J jackknife estimates,

    V(a) = a' (cov(Phi) / n + (K-1)/K * sum_k (Psi^(-k) - mean)(Psi^(-k) - mean)') a

is exactly the SE_total^2 that :mod:`cje.inference` reports for the combination
a' psi with influence Phi a and jackknife Psi^(-k) a. The weights
a = argmin_{a in simplex} V(a) (:func:`cje.weights.simplex_min_variance`), so the
stacked SE is never above the smallest component SE. No separate Monte-Carlo
term is added for the fresh draws: the per-prompt mean in each IF already
carries it (the reference added one per component and so pushed three of five
components to weight zero). At 100% oracle coverage (no OUA) V uses cov(Phi) / n only.
Combined estimate a' psi, influence Phi a, jackknife Psi^(-k) a.
"""

from __future__ import annotations

import numpy as np

from cje.estimators.base import register
from cje.estimators.dr import DREstimatorBase, DRInputs, DRResult, _score_ci, dr_cpo, mrdr, oc_dr_cpo, tr_cpo
from cje.estimators.tmle import tmle
from cje.weights import simplex_min_variance

__all__ = ["StackedDREstimator", "stack", "COMPONENTS"]

COMPONENTS = ("dr-cpo", "tmle", "mrdr", "oc-dr-cpo", "tr-cpo")
_FUNCS = {"dr-cpo": dr_cpo, "tmle": tmle, "mrdr": mrdr, "oc-dr-cpo": oc_dr_cpo, "tr-cpo": tr_cpo}


def stack(components: dict[str, DRResult], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Simplex weights minimising the variance of the combined influence function.

    ``components``: name -> DRResult with influence over the same n prompts (same
    order). Returns (alpha, cov(Phi) / n), the QP matrix.
    """
    phi = np.column_stack([components[c].influence for c in components])
    cov = np.atleast_2d(np.cov(phi, rowvar=False, ddof=1)) / n
    return simplex_min_variance(cov), cov


@register
class StackedDREstimator(DREstimatorBase):
    """stacked-dr: convex combination of the DR components with minimum total variance."""

    name = "stacked-dr"

    def __init__(self, outcome_model=None, weights="calibrated", components: tuple[str, ...] = COMPONENTS):
        super().__init__(outcome_model, weights)
        unknown = set(components) - set(_FUNCS)
        if unknown:
            raise ValueError(f"unknown stacked-dr components {sorted(unknown)}; choose from {COMPONENTS}")
        self.components = tuple(components)

    def compute(self, inp: DRInputs) -> DRResult:
        results = {c: _FUNCS[c](inp, self.outcome_model) for c in self.components}
        alpha, cov = stack(results, inp.n)
        names = list(results)
        psi = float(sum(a * results[c].estimate for a, c in zip(alpha, names)))
        phi = sum(a * results[c].influence for a, c in zip(alpha, names))
        jack = None
        if inp.ctx.oua:  # a component without a jackknife (tr-cpo) enters as a constant
            jack = sum(a * (results[c].jackknife if results[c].jackknife is not None
                            else np.full(inp.ctx.n_folds, results[c].estimate)) for a, c in zip(alpha, names))
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
        details = {
            "stacking_weights": {c: float(a) for a, c in zip(alpha, names)},
            "component_estimates": {c: results[c].estimate for c in names},
            "component_se_without_oua": {c: float(s) for c, s in zip(names, se)},
            "stacked_se_without_oua": float(np.sqrt(max(alpha @ cov @ alpha, 0.0))),
            "direct_part": float(sum(a * results[c].details["direct_part"] for a, c in zip(alpha, names))),
            "weighted_correction": float(sum(a * results[c].details["weighted_correction"]
                                             for a, c in zip(alpha, names))),
            "orthogonality_score": _score_ci(sum(a * results[c].residual for a, c in zip(alpha, names))),
            "outcome_model": results[names[0]].details["outcome_model"],
        }
        assumptions = list(dict.fromkeys(a for c in names for a in results[c].assumptions))
        assumptions.append("the stacking weights, chosen on the same data, do not bias the combination "
                           "(five components: a negligible selection effect)")
        residual = sum(a * results[c].residual for a, c in zip(alpha, names))
        return DRResult(psi, phi, jack, details, assumptions, residual)

