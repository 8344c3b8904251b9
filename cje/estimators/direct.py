"""Estimators that average over fresh draws: ``naive`` and ``direct`` (statistics.md 5).

* naive:  psi = mean_i mean_j S'_ij, the mean judge score of the target's fresh
  draws (what users report today; its CI ignores calibration error).
* direct: psi = mean_i mean_j f(S'_ij) + delta, with the transport correction
  delta of :mod:`cje.estimators.probes` (the probe residual, pooled with the weighted
  labels' residual when the weights' overlap PASSes) when the target has probe labels
  (``--probe-coverage``), else 0.

Both average per prompt first (all draws of a prompt form one cluster). The
direct method applies the fitted calibrator f to the fresh draws at every oracle
coverage, 100% included, so its OUA jackknife (psi recomputed with each f^(-k)) is
always computed (statistics.md 6, revised: without it coverage was 0.82-0.88 at
100% labels).

References
----------
Landesberg et al. (2025). Causal Judge Evaluation. arXiv:2512.11150.
"""

from __future__ import annotations

import numpy as np

from cje.errors import InputError
from cje.estimators.base import Estimator, PolicyEstimate, register
from cje.estimators.context import AnalysisContext, FreshView
from cje.estimators.probes import transport_correction

__all__ = ["NaiveEstimator", "DirectEstimator", "fresh_rows"]


def fresh_rows(ctx: AnalysisContext, policy: str) -> tuple[FreshView, np.ndarray, dict]:
    """Logged rows that have fresh draws for ``policy`` (scored rows only).

    A logged prompt without fresh draws is an error listing the first missing ids
    and the count, unless ``allow_missing_fresh_draws``: then those rows are dropped
    for this policy and counted under ``missing_fresh_draws``.

    Parameters
    ----------
    ctx : AnalysisContext
        The shared analysis context.
    policy : str
        The target policy.

    Returns
    -------
    view : FreshView
        The policy's fresh draws aligned with the logged rows.
    rows : ndarray of int
        Indices of the scored logged rows with at least one fresh draw.
    dropped : dict
        {reason: count}: ``missing_fresh_draws`` (when allowed) and
        ``fresh_draws_for_unlogged_prompts_ignored`` (draws of prompts not in the logged data).

    Raises
    ------
    InputError
        The policy has no fresh draws at all, or some logged prompts have none and
        ``allow_missing_fresh_draws`` is off (``field="prompt_id"``).
    """
    view = ctx.fresh_view(policy)
    scored = np.isfinite(ctx.data.judge_scores)
    missing = scored & ~view.has_fresh
    dropped = {}
    if missing.any():
        ids = ctx.data.prompt_ids[missing]
        if not ctx.options.allow_missing_fresh_draws:
            raise InputError(f"{ids.size} logged prompts have no fresh draws for policy '{policy}' "
                             f"(first: {', '.join(ids[:5].tolist())}); add them or pass "
                             "--allow-missing-fresh-draws to drop those rows for this policy",
                             field="prompt_id")
        dropped["missing_fresh_draws"] = int(ids.size)
    if view.n_ignored_draws:
        dropped["fresh_draws_for_unlogged_prompts_ignored"] = view.n_ignored_draws
    return view, np.flatnonzero(scored & view.has_fresh), dropped


@register
class NaiveEstimator(Estimator):
    """Mean judge score of the fresh draws (reference only).

    psi = mean_i mean_j S'_ij; influence phi_i = mean_j S'_ij - psi; no OUA jackknife (no
    calibrator enters).
    """

    name = "naive"
    needs_fresh_draws = True
    uses_calibration = False

    def estimate(self, ctx: AnalysisContext, policy: str) -> PolicyEstimate:
        """Mean judge score of ``policy``'s fresh draws, averaged per prompt first.

        Parameters
        ----------
        ctx : AnalysisContext
            The shared analysis context.
        policy : str
            The target policy.

        Returns
        -------
        PolicyEstimate
            Rests on ``fresh_draws`` and ``judge_is_metric``.

        Raises
        ------
        InputError
            Fresh draws are missing (:func:`fresh_rows`).
        """
        view, rows, dropped = fresh_rows(ctx, policy)
        per_prompt = view.row_mean(view.judge)[rows]
        psi = float(per_prompt.mean())
        return PolicyEstimate(estimate=psi, influence=per_prompt - psi,
                              cluster_ids=ctx.data.prompt_ids[rows], jackknife=None, n_used=int(rows.size),
                              details={"mean_judge_score": psi}, rests_on=["fresh_draws", "judge_is_metric"],
                              dropped=dropped)


@register
class DirectEstimator(Estimator):
    """Calibrated direct method over fresh draws, with the probe-label residual correction.

    psi = mean_i mean_j f(S'_ij) + delta (:func:`cje.estimators.probes.transport_correction`); influence
    phi_i = (gbar_i - mean gbar) + the correction's contribution, gbar_i = mean_j f(S'_ij);
    OUA jackknife psi^(-k) = mean_i mean_j f^(-k)(S'_ij) + delta^(-k), always computed.
    """

    name = "direct"
    needs_fresh_draws = True

    def estimate(self, ctx: AnalysisContext, policy: str) -> PolicyEstimate:
        """Calibrated mean of ``policy``'s fresh draws plus the probe residual correction.

        Parameters
        ----------
        ctx : AnalysisContext
            The shared analysis context.
        policy : str
            The target policy.

        Returns
        -------
        PolicyEstimate
            Rests on ``fresh_draws`` and ``transport``, or on ``random_labels`` instead of
            ``transport`` when probe labels correct it; the probe part carries its own df (m - 1).

        Raises
        ------
        InputError
            Fresh draws are missing (:func:`fresh_rows`).
        """
        view, rows, dropped = fresh_rows(ctx, policy)
        g = view.row_mean(view.R)[rows]
        base = float(g.mean())
        jack = np.array([view.row_mean(view.R_fold[k])[rows].mean() for k in range(ctx.n_folds)])
        corr = transport_correction(ctx, view, rows)
        if corr is None:
            return PolicyEstimate(estimate=base, influence=g - base, cluster_ids=ctx.data.prompt_ids[rows],
                                  jackknife=jack, n_used=int(rows.size),
                                  details={"direct_part": base, "residual_correction": 0.0, "n_probe_labels": 0},
                                  rests_on=["fresh_draws", "transport"], dropped=dropped)
        return PolicyEstimate(estimate=base + corr.delta, influence=(g - base) + corr.influence,
                              cluster_ids=ctx.data.prompt_ids[rows], jackknife=jack + corr.jackknife,
                              n_used=int(rows.size),
                              details={"direct_part": base, "residual_correction": corr.delta, **corr.details},
                              rests_on=["fresh_draws", "random_labels"], notes={"random_labels": corr.note()},
                              dropped=dropped, df_parts=corr.df_parts)
