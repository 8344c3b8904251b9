"""``stacked-dr``: the minimum-variance convex combination of the DR family (statistics.md 5-6).

Components J = {dr-cpo, tmle, mrdr, oc-dr-cpo, tr-cpo}, all computed on the same
used rows, fold map, weights and outcome model (so their influence functions
are aligned by prompt_id by construction). With Phi the n x J matrix of
per-prompt influence values and Psi^(-k) the K x J OUA jackknife estimates,

    V(a) = a' (cov(Phi) / n + (K-1)/K * sum_k (Psi^(-k) - mean)(Psi^(-k) - mean)') a

is exactly the SE_total^2 that :mod:`cje.inference` reports for the combination
a' psi with influence Phi a and jackknife Psi^(-k) a; its diagonal is each
component's SE_total^2. The weights a = argmin_{a in simplex} V(a)
(:func:`cje.weights.simplex_min_variance`) minimise the variance of the combined
influence function together with its oracle part, so the stacked SE is never
above the smallest component SE (tr-cpo's own interval puts its label term in
the IF; its ``oracle_channel`` moves it into an equivalent jackknife with the
same total). Every
component carries its oracle uncertainty in the jackknife here (tr-cpo through
its ``oracle_channel``), so the covariance between components' oracle errors
is estimated; mixing one
component's jackknife with another's label-term IF would treat two views of the
same calibration error as independent (measured: 83% coverage). No separate
Monte-Carlo term is added for the fresh draws: the per-prompt mean in each IF
already carries it (the reference added one per component and so pushed three
of five components to weight zero). At 100% oracle coverage V = cov(Phi) / n.
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


def stack(channels: list[tuple[np.ndarray, np.ndarray | None]], n: int):
    """Stacking weights and the combination's influence and jackknife.

    ``channels``: per component (influence over the same n prompts, jackknife or None).
    V = cov(Phi) / n + s s', s_j = sqrt(Var_oracle,j) from component j's jackknife
    (the oracle errors taken as perfectly correlated: an upper bound on
    a' C_J a by Cauchy-Schwarz, and the truth here, since every component
    carries the same calibration error); a = argmin_{a in simplex} a' V a.
    Returns (a, V, influence Phi a, jackknife or None) where the jackknife is the
    combination's pattern sum_j a_j (Psi_j^(-k) - mean) rescaled to the oracle
    variance (sum_j a_j s_j)^2, so that ``cje.inference`` reports SE_total^2 = a' V a.
    """
    phi = np.column_stack([c[0] for c in channels])
    cov = np.atleast_2d(np.cov(phi, rowvar=False, ddof=1)) / n
    jacks = [c[1] for c in channels]
    if any(j is None for j in jacks):
        alpha = simplex_min_variance(cov)
        return alpha, cov, phi @ alpha, None
    J = np.column_stack(jacks)
    k = J.shape[0]
    centred = J - J.mean(axis=0)
    s = np.sqrt((k - 1) / k * np.sum(centred ** 2, axis=0))
    V = cov + np.outer(s, s)
    alpha = simplex_min_variance(V)
    pattern = centred @ alpha
    spread = np.sqrt((k - 1) / k * np.sum(pattern ** 2))
    if spread <= 1e-15 * max(float(s.max()), 1e-300):  # components' patterns cancel: use the largest one
        pattern = centred[:, int(np.argmax(alpha * s))]
        spread = np.sqrt((k - 1) / k * np.sum(pattern ** 2))
    target = float(alpha @ s)
    jack = J.mean(axis=0) @ alpha + (pattern * (target / spread) if spread > 0 else 0.0)
    return alpha, V, phi @ alpha, jack


def _channel(inp: DRInputs, result: DRResult) -> tuple[np.ndarray, np.ndarray | None]:
    """(influence, jackknife) with the oracle uncertainty in the jackknife (tr-cpo: its
    ``oracle_channel``); below 100% coverage every component then has a jackknife."""
    if inp.ctx.oua and result.oracle_channel is not None:
        return result.oracle_channel
    return result.influence, result.jackknife


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
        names = list(results)
        channels = [_channel(inp, results[c]) for c in names]
        alpha, cov, phi, jack = stack(channels, inp.n)
        psi = float(sum(a * results[c].estimate for a, c in zip(alpha, names)))
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
        details = {
            "stacking_weights": {c: float(a) for a, c in zip(alpha, names)},
            "component_estimates": {c: results[c].estimate for c in names},
            "component_se": {c: float(s) for c, s in zip(names, se)},
            "stacked_se": float(np.sqrt(max(alpha @ cov @ alpha, 0.0))),
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

