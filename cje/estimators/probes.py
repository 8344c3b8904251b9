"""The transport correction of an estimate that uses f(S): probe labels pooled with weighted labels.

An estimate that averages the calibrated reward f(S) over a target's responses is biased
by b = E_target[Y - f(S)] when the calibration learned on base-policy rows does not
transport (statistics.md 7b). Two estimators of b exist:

* the probe residual delta_P = mean over the m probe-labelled fresh draws of
  (Y - f^(oof)(S')): unbiased whatever the weights, because the probes are a random subset
  of the target's own responses;
* the weighted-label residual delta_L = sum_L W (Y - f^(oof)(S)) / sum_L W over the labelled
  logged rows, W the raw (Hajek) importance weights: unbiased only when the weights cover
  the target (tr-cpo's label term).

The correction applied is b^ = (1 - alpha) delta_P + alpha delta_L with the design weight
alpha = n_L / (n_L + m), n_L = (sum_L W)^2 / sum_L W^2 the Kish effective number of
weighted labels. Both residuals estimate the same quantity with the same residual spread,
so their variances are about sigma^2 / m and sigma^2 / n_L and alpha is the inverse-variance
weight; it is computed from counts and weights only, never from the residuals, so the
pooling does not reuse the noise it averages (an inverse-variance blend with estimated
variances and an agreement pre-test covered 0.91 on a judge-gaming target). The weighted
labels enter only with positive evidence that the weights cover the target
(:func:`cje.stats.diagnostics.overlap_is_evidenced`: support, ESS and tail index all
PASS); otherwise alpha = 0 and the probes alone correct, as before.

Why pool: with 100 probes, the probe correction alone made direct's RMSE on healthy
targets 0.0126 at 100% oracle coverage against 0.0082 without probes (statistics.md 7c,
"Probes must not cost precision"): it replaced the evidence of 1,000 weighted labels by
that of 100 probes.

References
----------
Angelopoulos, A. N., Duchi, J. C. & Zrnic, T. (2023). PPI++: Efficient prediction-powered
inference. arXiv:2311.01453.
Kish, L. (1965). Survey Sampling. Wiley.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cje.estimators.context import AnalysisContext, FreshView
from cje.stats.diagnostics import overlap_is_evidenced
from cje.stats.inference import weighted_label_residual
from cje.stats.weights import WeightError

__all__ = ["TransportCorrection", "transport_correction", "probe_residual"]


@dataclass
class TransportCorrection:
    """The correction b^ added to an estimate over logged ``rows`` (see the module docstring).

    Parameters
    ----------
    delta : float
        b^ = (1 - alpha) delta_P + alpha delta_L.
    influence : ndarray
        Its per-row influence contribution over ``rows``.
    jackknife : ndarray of shape (K,)
        b^ recomputed with each f^(-k) (the OUA jackknife of the correction).
    n_probe : int
        Number m of probe labels used.
    df_parts : list of (ndarray, float)
        [(part of the influence, df)]: the probe part with m - 1, the weighted-label part with
        n_L - 1 (:func:`cje.stats.inference.interval`).
    details : dict
        delta_P, delta_L, alpha, n_L and why the weighted labels were or were not pooled.
    """

    delta: float
    influence: np.ndarray
    jackknife: np.ndarray
    n_probe: int
    df_parts: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def note(self) -> str:
        """One sentence for the estimate's 'random_labels' assumption."""
        text = (f"the residual correction on {self.n_probe} probe labels of the target's fresh draws removes "
                "calibration transport bias")
        alpha = self.details.get("label_pool_weight", 0.0)
        if alpha > 0:
            text += (f", pooled with the weighted residual of {self.details['pooled_label_effective_n']:.0f} effective "
                     f"logged labels (weight {alpha:.2f}; the weights' overlap PASSes)")
        return text


def probe_residual(ctx: AnalysisContext, view: FreshView, rows: np.ndarray):
    """The probe residual delta_P over the fresh draws of ``rows``.

    delta_P = mean over the probe-labelled draws of (Y - f^(oof)(S')); its per-row influence
    contribution is the row's sum of (Y - f^(oof)(S') - delta_P), times n_rows / m (m probe
    labels), and its jackknife delta_P^(-k) = mean (Y - f^(-k)(S')).

    Parameters
    ----------
    ctx : AnalysisContext
        The shared analysis context.
    view : FreshView
        The target's fresh draws.
    rows : ndarray of int
        The logged rows the estimate uses.

    Returns
    -------
    delta : float
        delta_P (0 when the policy has no probe labels among ``rows``).
    influence : ndarray
        Per-row influence contribution over ``rows`` (zeros without probe labels).
    jackknife : ndarray of shape (K,)
        delta_P^(-k) per fold (zeros without probe labels).
    n_probe : int
        Number m of probe labels used.
    """
    in_rows = np.zeros(ctx.data.n, bool)
    in_rows[rows] = True
    probe = view.probe & in_rows[view.row]
    m = int(probe.sum())
    if m == 0:
        return 0.0, np.zeros(rows.size), np.zeros(ctx.n_folds), 0
    resid = view.oracle[probe] - view.R_oof[probe]
    delta = float(resid.mean())
    per_row = np.bincount(view.row[probe], weights=resid - delta, minlength=ctx.data.n)[rows]
    phi = per_row * rows.size / m
    jack = view.oracle[probe].mean() - view.R_fold[:, probe].mean(axis=1)
    return delta, phi, jack, m


def _overlap_evidenced(ctx: AnalysisContext, policy: str) -> tuple[bool, str]:
    """(whether the raw weights of ``policy`` cover the target, why not) -- cached on the context."""
    key = ("overlap-evidenced", policy)
    if key not in ctx._cache:
        rows = ctx.rows(policy)
        try:
            weights = ctx.raw_weights(policy)
        except WeightError as exc:
            ctx._cache[key] = (False, f"the importance weights are unusable ({exc})")
            return ctx._cache[key]
        lr = ctx.data.target_logprobs[policy][rows] - ctx.data.base_logprobs[rows]
        ok = overlap_is_evidenced(weights, lr)
        ctx._cache[key] = (ok, "" if ok else "the weights' overlap is not evidenced (support, ESS >= 0.30 and "
                                             "Hill >= 2 must all PASS)")
    return ctx._cache[key]


def _weighted_label_part(ctx: AnalysisContext, policy: str, rows: np.ndarray):
    """delta_L over ``rows`` with the raw weights: (delta, influence, jackknife, n_L) or None."""
    full = np.zeros(ctx.data.n)
    full[ctx.rows(policy)] = ctx.raw_weights(policy)
    w = full[rows]
    labels = ctx.data.oracle_labels[rows]
    L = ctx.labelled[rows] & np.isfinite(labels) & np.isfinite(ctx.data.judge_scores[rows])
    Y = np.where(L, labels, 0.0)
    found = weighted_label_residual(w, L, Y, ctx.f_oof[rows])
    if found is None:
        return None
    delta, phi = found
    jack = np.array([weighted_label_residual(w, L, Y, ctx.f_fold[k, rows])[0] for k in range(ctx.n_folds)])
    wl = w[L]
    n_eff = float(wl.sum() ** 2 / np.sum(wl ** 2))
    return delta, phi, jack, n_eff


def transport_correction(ctx: AnalysisContext, view: FreshView | None, rows: np.ndarray) -> TransportCorrection | None:
    """The transport correction b^ of an estimate over logged ``rows`` (module docstring).

    Parameters
    ----------
    ctx : AnalysisContext
        The shared analysis context.
    view : FreshView or None
        The target's fresh draws (None: no probes).
    rows : ndarray of int
        The logged rows the estimate's influence is over.

    Returns
    -------
    TransportCorrection or None
        None when the target has no probe labels among ``rows`` (the estimate then rests on
        transport, or on the weighted labels of its own label term).
    """
    if view is None or not view.probe.any():
        return None
    delta_p, phi_p, jack_p, m = probe_residual(ctx, view, rows)
    if not m:
        return None
    details = {"probe_correction": delta_p, "n_probe_labels": m, "label_pool_weight": 0.0}
    part = None
    ok, why = _overlap_evidenced(ctx, view.policy)
    if ok:
        part = _weighted_label_part(ctx, view.policy, rows)
        if part is None:
            why = "fewer than 2 weighted labels"
    if part is None:
        details["label_pool_note"] = f"probes only: {why}"
        return TransportCorrection(delta_p, phi_p, jack_p, m, [(phi_p, max(m - 1, 1))], details)
    delta_l, phi_l, jack_l, n_eff = part
    alpha = n_eff / (n_eff + m)
    delta = (1 - alpha) * delta_p + alpha * delta_l
    details.update(label_correction=delta_l, pooled_label_effective_n=n_eff, label_pool_weight=alpha)
    return TransportCorrection(delta, (1 - alpha) * phi_p + alpha * phi_l, (1 - alpha) * jack_p + alpha * jack_l, m,
                               [((1 - alpha) * phi_p, max(m - 1, 1)), (alpha * phi_l, max(n_eff - 1, 1))], details)
