"""Importance-sampling estimators on the logged data (statistics.md 4-5).

psi = sum_i W_i R_i / sum_i W_i = mean_i W_i R_i (weights have mean 1), over the
rows valid for the policy, with R = f(S) the calibrated reward. Influence
function phi_i = W_i (R_i - psi); the OUA jackknife recomputes psi with
R^(-k) = f^(-k)(S), weights held fixed.

* raw-ips: Hajek weights clipped at ``clip`` (default 100) and renormalised.
* calibrated-ips: SIMCal-W weights (monotone in the calibrated score, stacked,
  variance-capped).
"""

from __future__ import annotations

import numpy as np

from cje.context import AnalysisContext
from cje.estimators.base import Estimator, PolicyEstimate, register

__all__ = ["RawIPSEstimator", "CalibratedIPSEstimator", "ips_estimate"]

IPS_ASSUMPTIONS = ["the target's responses are covered by the logged ones (overlap; see ESS)",
                   "surrogacy: E[Y | S] under the target equals the base-policy calibration f(S)"]


def ips_estimate(ctx: AnalysisContext, policy: str, weights: np.ndarray, details: dict) -> PolicyEstimate:
    """Self-normalised IPS with the given mean-1 weights over ``ctx.rows(policy)``."""
    rows = ctx.rows(policy)
    rewards = ctx.R[rows]
    psi = float(np.mean(weights * rewards))
    jack = None
    if ctx.oua:
        jack = (ctx.R_fold[:, rows] * weights).mean(axis=1)
    return PolicyEstimate(estimate=psi, influence=weights * (rewards - psi),
                          cluster_ids=ctx.data.prompt_ids[rows], jackknife=jack, n_used=int(rows.size),
                          weights=weights, details=details, assumptions=list(IPS_ASSUMPTIONS))


@register
class RawIPSEstimator(Estimator):
    """Clipped self-normalised IPS (SNIPS)."""

    name = "raw-ips"
    weight_role = "primary"

    def estimate(self, ctx: AnalysisContext, policy: str) -> PolicyEstimate:
        return ips_estimate(ctx, policy, ctx.clipped_weights(policy), {"clip": ctx.options.clip})


@register
class CalibratedIPSEstimator(Estimator):
    """SNIPS with SIMCal-W calibrated weights."""

    name = "calibrated-ips"
    weight_role = "primary"

    def estimate(self, ctx: AnalysisContext, policy: str) -> PolicyEstimate:
        sim = ctx.calibrated_weights(policy)
        return ips_estimate(ctx, policy, sim.weights,
                            {"simcal_stacking_weights": sim.stacking_weights, "blend_gamma": sim.blend_gamma,
                             "rho": ctx.options.rho, "variance_raw_weights": sim.variance_raw,
                             "variance_calibrated_weights": sim.variance_calibrated})
