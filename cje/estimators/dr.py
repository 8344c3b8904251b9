"""Doubly robust estimators: ``dr-cpo``, ``mrdr``, ``oc-dr-cpo``, ``tr-cpo`` (statistics.md 5-7b).

Notation over the used rows i (:mod:`cje.estimators.dr_inputs`): W_i the mean-1
correction weights (SIMCal-W calibrated by default), W_raw,i the Hajek weights,
R_i the reward (f(S_i) below 100% oracle coverage, Y_i at 100%), g^(-k) the outcome
model fitted without fold k, g_i = g^(-fold(i))(S_i), gbar_i = mean_j g^(-fold(i))(S'_ij)
over prompt i's fresh draws, f^(oof) the calibrator out of fold, L_i = 1 for a
labelled row:

* dr-cpo:    psi = mean_i gbar_i + mean_i W_i (R_i - g_i)
* mrdr:      as dr-cpo, with g fitted with sample weights omega(W) (default omega = W;
             ``omega="w2"`` uses W^2) (Farajtabar et al., 2018).
* oc-dr-cpo: dr-cpo + mean_i (W_raw,i - m_i) (R_i - f^(oof)(S_i)), m = E[W_raw | S]
             cross-fitted: the orthogonalising term for the calibration step (with the
             calibrated weights W - m(S) would be ~0 and the term would do nothing).
* tr-cpo:    dr-cpo + delta_L, the label term
             delta_L = sum_i L_i W_raw,i (Y_i - f^(oof)(S_i)) / sum_i L_i W_raw,i,
             weighted by the FULL importance weight. E_base[W (Y - f(S))] =
             E_target[Y] - E_target[f(S)] is exactly the transport bias of the calibrated
             part, so tr-cpo is consistent when EITHER the calibration transports OR the
             weights are right. (A label term weighted by m(S) = E[W | S] would be
             identically uninformative: E_base[(Y - f(S)) | S] = 0.) Labels are the seeded
             uniform coverage subset, so the labelling probability is known and the
             self-normalised (Hajek) form needs no propensity model.

When R = f(S) and g is a function of S alone, R - g = 0: dr-cpo, mrdr and tmle are then
exactly the direct method. That is correct arithmetic, not robustness; the output says
so in the estimate's ``transport`` assumption (statistics.md 5).

Influence per prompt: phi_i = (gbar_i - mean gbar) + W_i (R_i - g_i - c) + (t_i - mean t),
c = mean W (R - g), t_i the extra terms; tr-cpo adds the label term's
L_i W_raw,i (e_i - delta_L) / mean(L W_raw). OUA jackknife: psi^(-k) recomputes
everything with f^(-k) in place of f (R -> R^(-k), the outcome model refitted on it,
and tr-cpo's label residuals Y - f^(-k)(S)), weights and m held fixed; tr-cpo's
variance is its own influence function plus that jackknife, never an assumed constant.

Probe labels (``--probe-coverage``): the direct method's residual correction
mean(Y - f^(oof)(S')) on the target's labelled fresh draws is added to dr-cpo, mrdr,
tmle and oc-dr-cpo (it removes a surrogacy failure, statistics.md 7b). tr-cpo already
estimates that bias with its label term; with probes the probe estimate, which needs no
weights, replaces it (the label term stays in the details as a cross-check).

Injection (for double-robustness checks and experiments): every class takes
``outcome_model`` (any :class:`~cje.estimators.outcome.OutcomeModel`, default
cross-fitted isotonic) and ``weights`` ('calibrated' default, 'raw', 'clipped', or a
callable ``(ctx, policy) -> array over ctx.rows(policy)``).

References
----------
Bang, H., & Robins, J. M. (2005). Doubly robust estimation in missing data and causal
inference models. Biometrics, 61(4), 962-973.
Farajtabar, M., Chow, Y., & Ghavamzadeh, M. (2018). More robust doubly robust off-policy
evaluation. ICML 2018.
Kish, L. (1965). Survey Sampling. Wiley (the effective sample size of the label term).
Landesberg et al. (2025). Causal Judge Evaluation. arXiv:2512.11150.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cje.estimators.base import Estimator, PolicyEstimate, register
from cje.estimators.context import ByIdentity
from cje.estimators.probes import transport_correction
from cje.estimators.dr_inputs import DRInputs, WeightSource, model_key, prepare_dr
from cje.estimators.outcome import CrossFit, IsotonicOutcomeModel, OutcomeModel
from cje.stats.inference import weighted_label_residual

__all__ = ["DRResult", "assemble", "dr_cpo", "mrdr", "oc_dr_cpo", "tr_cpo", "finish",
           "with_probes", "family_assumptions", "DRCPOEstimator", "MRDREstimator", "OCDRCPOEstimator",
           "TRCPOEstimator", "DREstimatorBase", "INACTIVE_TOLERANCE"]

# |R - g| below this everywhere: the weighted correction W (R - g) contributes nothing.
INACTIVE_TOLERANCE = 1e-6
# a weighted term whose spread is below this share of the influence function's does not make the
# estimate rest on the weights (their diagnostics then do not lower its status)
MATTERS_SHARE = 0.1


@dataclass
class DRResult:
    """One DR component, before it is wrapped as a :class:`~cje.estimators.base.PolicyEstimate`.

    Parameters
    ----------
    estimate : float
        The component's point estimate.
    influence : ndarray
        Per-prompt influence values over ``inputs.rows``.
    jackknife : ndarray or None
        The OUA jackknife psi^(-k), or None.
    details : dict
        Numbers recorded in the output.
    rests_on : list of str
        The assumption ids it rests on.
    residual : ndarray
        The per-row weighted residual of its correction (for the orthogonality score).
    notes : dict
        {assumption id: text} for those assumptions.
    label_term : tuple or None, default=None
        tr-cpo's (delta, IF, jackknife).
    label_influence : ndarray or None, default=None
        The part of the IF that is oracle-label noise (tr-cpo below 100% coverage),
        the same randomness as the other components' calibration error (stacked-dr needs to know).
    df_parts : list of (ndarray, float)
        [(part of influence, df)] (:func:`cje.stats.inference.interval`).
    """

    estimate: float
    influence: np.ndarray
    jackknife: np.ndarray | None
    details: dict
    rests_on: list[str]
    residual: np.ndarray
    notes: dict = field(default_factory=dict)
    label_term: tuple | None = None
    label_influence: np.ndarray | None = None  # the oracle-label sampling part of ``influence``
    df_parts: list = field(default_factory=list)  # [(part of influence, df)] (cje.stats.inference.interval)


def _score_ci(values: np.ndarray, z: float = 1.959964) -> dict:
    """Mean of per-row values with its SE and a 95% normal interval (the orthogonality score)."""
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return {"mean": mean, "se": se, "ci_lower": mean - z * se, "ci_upper": mean + z * se}


def assemble(inp: DRInputs, g: CrossFit, R: np.ndarray, extra: dict[str, np.ndarray] | None = None):
    """Combine the direct part, the weighted correction and extra terms into one DR estimate.

    psi = mean gbar + mean W (R - g) + sum_t mean t, with the influence
    phi = (gbar - mean gbar) + W (R - g - c) + sum_t (t - mean t), c = mean W (R - g):
    the Hajek form W (R - g - c) for the weighted correction.

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    g : CrossFit
        The cross-fitted outcome model on the logged rows and the fresh draws.
    R : ndarray
        The rewards over the used rows (R, or R^(-k) for the jackknife).
    extra : dict of str to ndarray or None, default=None
        Term names to per-row arrays (e.g. the orthogonalising term).

    Returns
    -------
    psi : float
        The estimate.
    phi : ndarray
        Its per-row influence values.
    parts : dict
        ``direct_part``, ``weighted_correction`` and the mean of each extra term.
    """
    gbar = inp.row_mean(g.fresh)
    resid = inp.W * (R - g.logged)
    direct, corr = float(gbar.mean()), float(resid.mean())
    phi = (gbar - direct) + inp.W * (R - g.logged - corr)
    psi = direct + corr
    parts = {"direct_part": direct, "weighted_correction": corr}
    for name, t in (extra or {}).items():
        mt = float(t.mean())
        psi += mt
        phi = phi + (t - mt)
        parts[name] = mt
    return psi, phi, parts


def _jackknife(inp: DRInputs, psi_with: Callable[[int], float]) -> np.ndarray | None:
    """psi^(-k) for k = 0..K-1 by ``psi_with(k)``, or None when OUA does not apply."""
    if not inp.ctx.oua:
        return None
    return np.array([psi_with(k) for k in range(inp.ctx.n_folds)])


def _matters(term: np.ndarray, phi: np.ndarray) -> bool:
    """Does a weighted term materially enter the estimate? Its spread above 10% of the IF's."""
    return bool(term.size > 1 and np.std(term) > MATTERS_SHARE * np.std(phi))


def family_assumptions(inp: DRInputs, gap: float, correction: np.ndarray, phi: np.ndarray) -> tuple[list[str], dict]:
    """What dr-cpo / mrdr / tmle / oc-dr-cpo rest on.

    With R = Y (100% coverage) and raw weights, the correction is the textbook DR one:
    right when either the outcome model (with transport) or the weights are. Otherwise the
    calibrated part rests on transport; the weights add 'overlap' only when the correction
    materially enters the estimate (:func:`_matters`), and a zero correction is said to be the
    direct method, so weights that contribute nothing never lower the status.

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    gap : float
        max |R - g| over the used rows.
    correction : ndarray
        The per-row weighted correction W (R - g).
    phi : ndarray
        The estimate's influence values.

    Returns
    -------
    rests_on : list of str
        Assumption ids.
    notes : dict
        {assumption id: text} explaining the choice.
    """
    if inp.ctx.rewards_are_labels and inp.weights_source in ("raw", "clipped"):
        return ["fresh_draws", "transport_or_overlap"], {}
    if gap <= INACTIVE_TOLERANCE:
        return ["fresh_draws", "transport"], {"transport": (
            f"R = f(S) and the outcome model g(S) are both functions of the judge score, so the weighted "
            f"correction W (R - g) is zero (max |R - g| = {gap:.1e}): this estimate is the direct method and "
            "rests on transport exactly as direct does; double robustness buys nothing here")}
    if not _matters(correction, phi):
        return ["fresh_draws", "transport"], {"transport": (
            "the weighted correction W (R - g) barely enters the estimate (its spread is under "
            f"{MATTERS_SHARE:.0%} of the influence function's), so this is nearly the direct method and rests on "
            "transport as direct does")}
    return ["fresh_draws", "transport", "overlap"], {"transport": (
        "the correction W (R - g) with weights that are a function of S (SIMCal-W) corrects the outcome model "
        "at the judge-score level only, so transport is still needed")}


def _dr_family(inp: DRInputs, model: OutcomeModel, omega: str | None, orthogonal: bool) -> DRResult:
    """The shared computation of dr-cpo / mrdr / oc-dr-cpo."""
    m = inp.weight_model(raw=True).logged if orthogonal else None

    def extra(R: np.ndarray) -> dict:
        return {"orthogonalising_term": (inp.W_raw - m) * (R - inp.f_oof)} if orthogonal else {}

    g = inp.outcome(model, None, omega)
    psi, phi, parts = assemble(inp, g, inp.R, extra(inp.R))
    jack = _jackknife(inp, lambda k: assemble(inp, inp.outcome(model, k, omega), inp.R_fold[k],
                                              extra(inp.R_fold[k]))[0])
    gap = float(np.max(np.abs(inp.R - g.logged))) if inp.n else 0.0
    details = {**parts, "orthogonality_score": _score_ci(inp.W * (inp.R - g.logged)),
               "outcome_model": _model_name(model), "max_abs_reward_minus_outcome": gap}
    if omega:
        details["mrdr_omega"] = omega
    rests_on, notes = family_assumptions(inp, gap, inp.W * (inp.R - g.logged), phi)
    label_term = None
    if orthogonal and inp.ctx.rewards_are_labels:
        # R = Y: E_base[(W_raw - m(S)) (Y - f(S))] = E_target[Y - f(S)], the transport bias
        rests_on, notes = ["fresh_draws", "transport_or_overlap"], {"transport_or_overlap": (
            "with R = Y the orthogonalising term (W_raw - m(S)) (Y - f(S)) estimates the transport bias "
            "with the full weights")}
        t = extra(inp.R)["orthogonalising_term"]
        label_term = (float(t.mean()), t - t.mean(), None)
    elif orthogonal and _matters(extra(inp.R)["orthogonalising_term"], phi) and "overlap" not in rests_on:
        rests_on.append("overlap")
    return DRResult(psi, phi, jack, details, rests_on, inp.W * (inp.R - g.logged), notes, label_term)


def _model_name(model: OutcomeModel) -> str:
    return getattr(model, "name", type(model).__name__)


def dr_cpo(inp: DRInputs, model: OutcomeModel) -> DRResult:
    """dr-cpo on prepared inputs: psi = mean_i gbar_i + mean_i W_i (R_i - g_i) (cached per model on ``inp``).

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    model : OutcomeModel
        The outcome model g, cross-fitted on the fold map.

    Returns
    -------
    DRResult
        The dr-cpo component (estimate, influence, jackknife, assumptions).

    References
    ----------
    Bang, H., & Robins, J. M. (2005). Doubly robust estimation in missing data and causal
    inference models. Biometrics, 61(4), 962-973.
    """
    return inp.memo(("dr-cpo", model_key(model)), lambda: _dr_family(inp, model, None, orthogonal=False))


def mrdr(inp: DRInputs, model: OutcomeModel, omega: str = "w") -> DRResult:
    """mrdr: outcome model fitted with sample weights omega(W) ('w' or 'w2'; cached per model and omega).

    psi = mean_i gbar_i + mean_i W_i (R_i - g_i), g fitted with sample weights W ('w') or W^2 ('w2').

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    model : OutcomeModel
        The outcome model g.
    omega : {'w', 'w2'}, default='w'
        The sample weights of its fit.

    Returns
    -------
    DRResult
        The mrdr component.

    Raises
    ------
    ValueError
        ``omega`` is not 'w' or 'w2'.

    References
    ----------
    Farajtabar, M., Chow, Y., & Ghavamzadeh, M. (2018). More robust doubly robust off-policy
    evaluation. ICML 2018.
    """
    if omega not in ("w", "w2"):
        raise ValueError(f"mrdr omega must be 'w' or 'w2', got {omega!r}")
    return inp.memo(("mrdr", model_key(model), omega), lambda: _dr_family(inp, model, omega, orthogonal=False))


def oc_dr_cpo(inp: DRInputs, model: OutcomeModel) -> DRResult:
    """oc-dr-cpo: dr-cpo + mean (W_raw - m(S)) (R - f^(oof)(S)) (cached per model on ``inp``).

    m(S) = E[W_raw | S], cross-fitted. With R = Y (100% coverage) the term estimates the
    transport bias with the full weights, and the estimate rests on ``transport_or_overlap``.

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    model : OutcomeModel
        The outcome model g.

    Returns
    -------
    DRResult
        At 100% coverage ``label_term`` holds the orthogonalising term (delta, IF, None).
    """
    return inp.memo(("oc-dr-cpo", model_key(model)), lambda: _dr_family(inp, model, None, orthogonal=True))


def _kish_df(weights: np.ndarray) -> float:
    """Kish effective sample size minus one: the df of a weighted mean over these rows."""
    w = np.asarray(weights, float)
    return max(float(w.sum() ** 2 / np.sum(w ** 2)) - 1.0, 1.0) if w.size and np.sum(w ** 2) > 0 else 1.0


def tr_cpo(inp: DRInputs, model: OutcomeModel) -> DRResult:
    """tr-cpo = dr-cpo + delta_L, the full-weight label term (module docstring; cached per model on ``inp``).

    delta_L = sum_i L_i W_raw,i (Y_i - f^(oof)(S_i)) / sum_i L_i W_raw,i.
    IF: dr-cpo's plus L W_raw (e - delta_L) / mean(L W_raw), e = Y - f^(oof)(S); OUA
    jackknife: dr-cpo's with f^(-k) plus delta_L recomputed with e^(-k) = Y - f^(-k)(S).
    Fewer than 2 labelled rows (or no weight on them): no label term, and the estimate
    rests on transport like dr-cpo. The label part's df is the Kish effective number of
    labels minus one, (sum L W_raw)^2 / sum L W_raw^2 - 1, at least 1.

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    model : OutcomeModel
        The outcome model g.

    Returns
    -------
    DRResult
        With ``label_term`` = (delta_L, its IF, its jackknife) and ``label_influence``.

    References
    ----------
    Kish, L. (1965). Survey Sampling. Wiley.
    """
    return inp.memo(("tr-cpo", model_key(model)), lambda: _tr_cpo(inp, model))


def _tr_cpo(inp: DRInputs, model: OutcomeModel) -> DRResult:
    base = dr_cpo(inp, model)
    if inp.ctx.rewards_are_labels:
        return _tr_cpo_all_labelled(inp, model, base)
    L = inp.L
    found = weighted_label_residual(inp.W_raw, L, inp.Y, inp.f_oof)
    if found is None:
        details = {**base.details, "n_labels": int(L.sum()), "label_term": 0.0,
                   "label_term_note": "fewer than 2 labelled rows: no label term"}
        return DRResult(base.estimate, base.influence, base.jackknife, details, base.rests_on, base.residual,
                        base.notes)
    delta, phi_label = found
    # below 100% coverage dr-cpo always has its jackknife; the label residuals use f^(-k) too
    jack_label = np.array([weighted_label_residual(inp.W_raw, L, inp.Y, inp.f_fold[k])[0]
                           for k in range(inp.ctx.n_folds)])
    psi = base.estimate + delta
    phi = base.influence + phi_label
    jack = base.jackknife + jack_label
    details = {**base.details, "label_term": delta, "n_labels": int(L.sum()),
               "label_effective_n": _kish_df(inp.W_raw[L]) + 1.0,
               "label_term_se": float(np.sqrt(np.var(phi_label, ddof=1) / inp.n)),
               "label_weights": "raw (Hajek) importance weights",
               "oracle_uncertainty": "label-term influence function + OUA jackknife over f^(-k)"}
    return DRResult(psi, phi, jack, details, ["fresh_draws", "transport_or_overlap", "random_labels"],
                    base.residual, {}, label_term=(delta, phi_label, jack_label), label_influence=phi_label,
                    df_parts=[(phi_label, _kish_df(inp.W_raw[L]))])


def _tr_cpo_all_labelled(inp: DRInputs, model: OutcomeModel, base: DRResult) -> DRResult:
    """tr-cpo at 100% oracle coverage: every row is labelled and R = Y, so the label term and
    the correction merge into the full-weight correction, psi = mean gbar + mean W_raw (Y - g).

    Reported as dr-cpo plus the label term delta_L = mean W_raw (Y - g) - mean W (Y - g). No
    calibrator enters (no OUA): recomputing the label residuals with f^(-k) while the outcome
    model stays fitted on Y counted the calibration error twice (measured coverage 0.99-1.0).
    """
    g = inp.outcome(model)
    r = inp.R - g.logged
    corr_raw, corr_cal = float(np.mean(inp.W_raw * r)), float(np.mean(inp.W * r))
    delta = corr_raw - corr_cal
    phi_label = inp.W_raw * (r - corr_raw) - inp.W * (r - corr_cal)
    details = {**base.details, "label_term": delta, "n_labels": int(inp.L.sum()),
               "label_term_se": float(np.sqrt(np.var(phi_label, ddof=1) / inp.n)),
               "label_weights": "raw (Hajek) importance weights (all rows labelled: the full-weight correction)"}
    return DRResult(base.estimate + delta, base.influence + phi_label, None, details,
                    ["fresh_draws", "transport_or_overlap"], base.residual, {}, label_term=(delta, phi_label, None))


def _logged_rewards_from_calibrator(inp: DRInputs, result: DRResult) -> tuple[DRResult, np.ndarray]:
    """At 100% oracle coverage, move the component's logged correction from R = Y to R = f(S).

    With probe labels the transport bias is estimated from the probes; the logged correction
    mean W (Y - g) at 100% coverage estimates it a second time through the weights (counted
    twice when the weights see the failure, and carrying the heavy-weight noise the influence
    function understates: dr-cpo and tr-cpo covered 0.90 with SE / Monte-Carlo sd 0.74 on a
    judge-blind defect the base writes in 5% of responses). Subtracting
    c = mean W (Y - f^(oof)(S)) turns mean W (Y - g) into mean W (f - g), as below 100%
    coverage, where the rewards of every logged row are f(S). Influence W (Y - f - c); the
    calibrator now enters, so the jackknife is psi - c^(-k) with f^(-k).

    Returns
    -------
    result : DRResult
        The component with psi - c and its influence.
    jackknife : ndarray of shape (K,)
        psi - c^(-k).
    """
    W, Y = inp.W, inp.Y
    c = float(np.mean(W * (Y - inp.f_oof)))
    phi_c = W * (Y - inp.f_oof - c)
    c_fold = np.mean(W * (Y - inp.f_fold), axis=1)
    base_jack = np.full(inp.ctx.n_folds, result.estimate) if result.jackknife is None else result.jackknife
    details = {**result.details, "logged_label_correction_replaced": c}
    moved = DRResult(result.estimate - c, result.influence - phi_c, None, details, result.rests_on,
                     result.residual, result.notes, label_term=result.label_term,
                     label_influence=result.label_influence, df_parts=result.df_parts)
    return moved, base_jack - c_fold


def with_probes(inp: DRInputs, result: DRResult) -> DRResult:
    """Apply the target's probe labels (if any) to one component.

    dr-cpo / mrdr / tmle / oc-dr-cpo: add the transport correction b^ of
    :func:`cje.estimators.probes.transport_correction` (the probe residual, pooled with the
    weighted labels' residual when the weights' overlap PASSes; its IF and jackknife too); the
    estimate no longer rests on transport. tr-cpo (``label_term`` set): b^ replaces its label
    term (which is b^'s weighted-label part when the weights cover the target). At 100% oracle
    coverage the logged correction first moves from R = Y to R = f(S)
    (:func:`_logged_rewards_from_calibrator`).

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    result : DRResult
        The component without probes.

    Returns
    -------
    DRResult
        ``result`` itself when the policy has no probe labels among the used rows (cached per
        component: every estimator of the context and stacked-dr share it).
    """
    return inp.memo(("with-probes", ByIdentity(result)), lambda: _with_probes(inp, result))


def _with_probes(inp: DRInputs, result: DRResult) -> DRResult:
    corr = transport_correction(inp.ctx, inp.view, inp.rows)
    if corr is None:
        return result
    delta_p, phi_p, jack_p, n_probe = corr.delta, corr.influence, corr.jackknife, corr.n_probe
    details = {**result.details, "residual_correction": delta_p, **corr.details}
    K = inp.ctx.n_folds
    jack = result.jackknife
    if inp.ctx.rewards_are_labels:
        result, jack = _logged_rewards_from_calibrator(inp, result)
        details = {**result.details, **details}
    if result.label_term is None:
        psi, phi = result.estimate + delta_p, result.influence + phi_p
        jack = np.full(K, result.estimate) + jack_p if jack is None else jack + jack_p
        rests_on = [a for a in result.rests_on if a != "transport"] + ["random_labels"]
        notes = {"random_labels": corr.note()}
        return DRResult(psi, phi, jack, details, list(dict.fromkeys(rests_on)), result.residual, notes,
                        df_parts=result.df_parts + corr.df_parts)
    # tr-cpo (or oc-dr-cpo at 100% coverage): its label term and the probes estimate the same
    # transport bias; b^ pools them with design weights only when the weights' overlap PASSes,
    # so it replaces the label term (kept in the details as a cross-check).
    delta_l, phi_l, jack_l = result.label_term
    psi = result.estimate - delta_l + delta_p
    phi = result.influence - phi_l + phi_p
    jack_l_arr = np.full(K, delta_l) if jack_l is None else jack_l
    jack = (np.full(K, result.estimate) if jack is None else jack) - jack_l_arr + jack_p
    details.update(label_term_replaced_by_probes=delta_l, transport_bias_estimate=delta_p)
    if "label_effective_n" in details:  # the label term no longer enters: its label count does not matter
        details["replaced_label_effective_n"] = details.pop("label_effective_n")
    rests_on = [a for a in result.rests_on if a not in ("transport_or_overlap", "transport")] + ["random_labels"]
    notes = {"random_labels": f"{corr.note()} ({delta_p:+.4f}; the label term alone: {delta_l:+.4f})"}
    return DRResult(psi, phi, jack, details, list(dict.fromkeys(rests_on)), result.residual, notes,
                    df_parts=corr.df_parts)


def finish(inp: DRInputs, result: DRResult) -> PolicyEstimate:
    """Wrap a component (probe labels already applied) as a :class:`PolicyEstimate`.

    Also records the direct-vs-IPS split: ``ips_estimate_same_weights`` = mean W R next
    to the DR ``direct_part``; far apart means the weights and the outcome model disagree.

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    result : DRResult
        The component.

    Returns
    -------
    PolicyEstimate
        The estimate as the analysis records it, with the weights and dropped rows.
    """
    ctx = inp.ctx
    details = {**result.details, "weights": inp.weights_source, "n_fresh_draws": int(inp.fpos.size),
               "fresh_draws_per_prompt": float(inp.n_draws.mean()),
               "ips_estimate_same_weights": float(np.mean(inp.W * inp.R))}
    return PolicyEstimate(estimate=float(result.estimate), influence=result.influence,
                          cluster_ids=ctx.data.prompt_ids[inp.rows], jackknife=result.jackknife, n_used=inp.n,
                          weights=inp.W, details=details, rests_on=list(result.rests_on),
                          notes=dict(result.notes), dropped=dict(inp.dropped), weight_rows=inp.rows,
                          df_parts=list(result.df_parts))


class DREstimatorBase(Estimator):
    """Shared constructor and ``estimate`` of the DR family.

    Parameters
    ----------
    outcome_model : OutcomeModel or None, default=None
        An OutcomeModel (default cross-fitted isotonic of R on S).
    weights : str or callable, default='calibrated'
        'calibrated' (SIMCal-W, default), 'raw', 'clipped' or a callable
        ``(ctx, policy) -> weights over ctx.rows(policy)`` (a deliberate override).
    """

    weight_role = "correction"
    needs_fresh_draws = True

    def __init__(self, outcome_model: OutcomeModel | None = None, weights: WeightSource = "calibrated"):
        self.outcome_model = outcome_model or IsotonicOutcomeModel()
        self.weights = weights

    def compute(self, inp: DRInputs) -> DRResult:  # pragma: no cover - abstract
        """The component on prepared inputs, without probe labels (each subclass implements it).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            The component.
        """
        raise NotImplementedError

    def compute_with_probes(self, inp: DRInputs) -> DRResult:
        """The component with the target's probe labels applied (:func:`with_probes`).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            The component, probe-corrected when the policy has probe labels.
        """
        return with_probes(inp, self.compute(inp))

    def estimate(self, ctx, policy: str) -> PolicyEstimate:
        """Prepare the DR inputs of ``policy``, compute the component with probes and wrap it.

        Parameters
        ----------
        ctx : AnalysisContext
            The shared analysis context.
        policy : str
            The target policy.

        Returns
        -------
        PolicyEstimate
            The estimate of ``policy``.

        Raises
        ------
        InputError
            Fresh draws are missing (:func:`cje.estimators.direct.fresh_rows`).
        WeightError
            The weights over the used rows are unusable (:func:`cje.estimators.dr_inputs.prepare_dr`).
        """
        inp = prepare_dr(ctx, policy, self.weights)
        return finish(inp, self.compute_with_probes(inp))


@register
class DRCPOEstimator(DREstimatorBase):
    """dr-cpo: direct part on fresh draws + weighted residual correction on logged rows.

    Parameters
    ----------
    outcome_model : OutcomeModel or None, default=None
        The outcome model g (default cross-fitted isotonic of R on S).
    weights : str or callable, default='calibrated'
        As in :class:`DREstimatorBase`.
    """

    name = "dr-cpo"

    def compute(self, inp: DRInputs) -> DRResult:
        """dr-cpo on prepared inputs (:func:`dr_cpo`).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            The dr-cpo component.
        """
        return dr_cpo(inp, self.outcome_model)


@register
class MRDREstimator(DREstimatorBase):
    """mrdr: dr-cpo with the outcome model fitted with sample weights omega(W).

    Parameters
    ----------
    outcome_model : OutcomeModel or None, default=None
        The outcome model (default cross-fitted isotonic of R on S).
    weights : str or callable, default='calibrated'
        As in :class:`DREstimatorBase`.
    omega : {'w', 'w2'}, default='w'
        Sample weights W or W^2 of the outcome model's fit.
    """

    name = "mrdr"

    def __init__(self, outcome_model: OutcomeModel | None = None, weights: WeightSource = "calibrated",
                 omega: str = "w"):
        super().__init__(outcome_model, weights)
        self.omega = omega

    def compute(self, inp: DRInputs) -> DRResult:
        """mrdr on prepared inputs (:func:`mrdr`).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            The mrdr component.

        Raises
        ------
        ValueError
            ``omega`` is not 'w' or 'w2'.
        """
        return mrdr(inp, self.outcome_model, self.omega)


@register
class OCDRCPOEstimator(DREstimatorBase):
    """oc-dr-cpo: dr-cpo plus the calibration-orthogonalising term.

    Parameters
    ----------
    outcome_model : OutcomeModel or None, default=None
        The outcome model g (default cross-fitted isotonic of R on S).
    weights : str or callable, default='calibrated'
        As in :class:`DREstimatorBase`.
    """

    name = "oc-dr-cpo"

    def compute(self, inp: DRInputs) -> DRResult:
        """oc-dr-cpo on prepared inputs (:func:`oc_dr_cpo`).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            The oc-dr-cpo component.
        """
        return oc_dr_cpo(inp, self.outcome_model)


@register
class TRCPOEstimator(DREstimatorBase):
    """tr-cpo: dr-cpo plus the full-importance-weight oracle-label term.

    Parameters
    ----------
    outcome_model : OutcomeModel or None, default=None
        The outcome model g (default cross-fitted isotonic of R on S).
    weights : str or callable, default='calibrated'
        As in :class:`DREstimatorBase`.
    """

    name = "tr-cpo"

    def compute(self, inp: DRInputs) -> DRResult:
        """tr-cpo on prepared inputs (:func:`tr_cpo`).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            The tr-cpo component.
        """
        return tr_cpo(inp, self.outcome_model)
