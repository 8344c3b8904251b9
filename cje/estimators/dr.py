"""Doubly robust estimators: ``dr-cpo``, ``mrdr``, ``oc-dr-cpo``, ``tr-cpo`` (statistics.md 5-7b).

Notation over the used rows i (logged prompts valid for the policy, with a judge
score and fresh draws), W_i the mean-1 importance weights (SIMCal-W calibrated
by default), R_i = f(S_i), g^(-k) the outcome model fitted without fold k,
g_i = g^(-fold(i))(S_i), and gbar_i = mean_j g^(-fold(i))(S'_ij) over prompt i's
fresh draws (several draws per prompt are averaged per prompt):

* dr-cpo:    psi = mean_i gbar_i + mean_i W_i (R_i - g_i)
* mrdr:      as dr-cpo, with g fitted with sample weights omega(W) (default
             omega = W; ``omega="w2"`` uses W^2) so that the weighted residual
             W (R - g), the variance of the correction, is small where W is large
             (Farajtabar et al., 2018, "More Robust Doubly Robust OPE").
* oc-dr-cpo: dr-cpo + mean_i (W_i - m_i) (R_i - f^(oof)(S_i)), m = E[W | S]
             cross-fitted: the orthogonalising term for the calibration step.
* tr-cpo:    oc-dr-cpo + mean_i (L_i / pi_L(S_i)) m_i (Y_i - R_i), the label term;
             pi_L = P(L = 1 | S) cross-fitted, clipped to [1e-3, 1]. Computed fully
             cross-fitted in the labels (R_i = f^(-fold(i))(S_i), outcome model
             refitted per fold on f^(-k) rewards), so the orthogonalising term is 0
             and the label term is an honest residual; its IF carries the oracle
             uncertainty, so its jackknife is constant (see :func:`tr_cpo`).

Influence function per prompt: phi_i = (gbar_i - mean gbar) + W_i (R_i - g_i - c)
+ (t_i - mean t), c = mean W (R - g) (Hajek form), t_i the extra terms.
OUA jackknife: psi^(-k) recomputes everything with f^(-k) in place of f
(R -> ``ctx.R_fold[k]``; the outcome model is refitted on those rewards), weights
and m held fixed. When a target has probe labels (``--probe-coverage``), the
direct method's residual correction mean(Y - f^(oof)(S')) is added (it is what
removes a surrogacy failure, statistics.md 7b).

Injection (for double-robustness checks and experiments): every class takes
``outcome_model`` (any :class:`~cje.estimators.outcome.OutcomeModel`, default
cross-fitted isotonic) and ``weights`` ('calibrated' default, 'raw', 'clipped',
or a callable ``(ctx, policy) -> array over ctx.rows(policy)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from cje.context import AnalysisContext, FreshView
from cje.estimators.base import Estimator, PolicyEstimate, register
from cje.estimators.direct import fresh_rows, residual_correction
from cje.estimators.outcome import (CrossFit, IsotonicOutcomeModel, OutcomeModel, cross_fit,
                                    cross_fit_label_propensity, cross_fit_weight_model)
from cje.weights import WeightError

__all__ = ["DRInputs", "DRResult", "prepare_dr", "dr_cpo", "mrdr", "oc_dr_cpo", "tr_cpo", "finish",
           "DRCPOEstimator", "MRDREstimator", "OCDRCPOEstimator", "TRCPOEstimator", "DREstimatorBase",
           "WeightSource", "BASE_ASSUMPTIONS"]

WeightSource = Union[str, Callable[[AnalysisContext, str], np.ndarray]]
BASE_ASSUMPTIONS = [
    "fresh draws are a sample from the target policy",
    "double robustness: either the outcome model g(S) or the importance weights are right",
    "surrogacy: E[Y | S] under the target equals the base-policy calibration f(S); the correction "
    "W (R - g) uses R = f(S), so it cannot detect a surrogacy failure (check with --probe-coverage)",
]


@dataclass
class DRInputs:
    """One policy's aligned arrays over the used rows U (n_u of them) and its fresh draws.

    rows : logged row indices U; S, R, R_oof, folds, W, L (labelled), Y (0 where unlabelled)
    over U; R_fold : K x n_u; per fresh draw: fpos (position in U), fS (judge), ffolds.
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
    L: np.ndarray
    Y: np.ndarray
    fpos: np.ndarray
    fS: np.ndarray
    ffolds: np.ndarray
    n_draws: np.ndarray
    dropped: dict
    weights_source: str
    cache: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.rows.size)

    def row_mean(self, per_draw: np.ndarray) -> np.ndarray:
        """Average a per-draw array over each used prompt's fresh draws."""
        return np.bincount(self.fpos, weights=per_draw, minlength=self.n) / self.n_draws

    def outcome(self, model: OutcomeModel, k: int | None = None, omega: str | None = None) -> CrossFit:
        """Cross-fitted outcome model on R (k None) or on f^(-k) rewards R_fold[k] (cached).

        omega: None (unweighted), 'w' (sample weights W) or 'w2' (W^2).
        """
        key = ("outcome", id(model), k, omega)
        if key not in self.cache:
            targets = self.R if k is None else self.R_fold[k]
            sw = None if omega is None else (self.W if omega == "w" else self.W ** 2)
            self.cache[key] = (model, cross_fit(model, self.S, targets, self.folds, self.ctx.n_folds,
                                                self.fS, self.ffolds, sample_weight=sw))
        return self.cache[key][1]

    def weight_model(self) -> CrossFit:
        """m(S) = E[W | S], cross-fitted (cached)."""
        if "m" not in self.cache:
            self.cache["m"] = cross_fit_weight_model(self.S, self.W, self.folds, self.ctx.n_folds,
                                                     self.fS, self.ffolds)
        return self.cache["m"]

    def label_propensity(self) -> np.ndarray:
        """pi_L(S) over U, cross-fitted and clipped to [1e-3, 1] (cached)."""
        if "pi_L" not in self.cache:
            self.cache["pi_L"] = cross_fit_label_propensity(self.S, self.L, self.folds, self.ctx.n_folds)
        return self.cache["pi_L"]


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


def prepare_dr(ctx: AnalysisContext, policy: str, weights: WeightSource = "calibrated") -> DRInputs:
    """Align logged rows, weights and fresh draws of ``policy`` (cached per weight source).

    Used rows: valid for the policy, scored, with fresh draws (a prompt without
    fresh draws is an error unless ``allow_missing_fresh_draws``; see
    :func:`cje.estimators.direct.fresh_rows`). The weights are restricted to the
    used rows and renormalised to mean 1. Raises WeightError when unusable.
    """
    key = ("dr-inputs", policy, weights if isinstance(weights, str) else id(weights))
    if key in ctx._cache:
        return ctx._cache[key][1]
    view, fresh_ok, dropped = fresh_rows(ctx, policy)
    valid = ctx.rows(policy)
    W_all, source = _weights(ctx, policy, weights)
    if W_all.shape != valid.shape:
        raise WeightError(f"weights for '{policy}' have {W_all.size} entries, expected {valid.size} "
                          "(one per row valid for the policy)")
    has = np.zeros(ctx.data.n, bool)
    has[fresh_ok] = True
    keep = has[valid]
    rows, W = valid[keep], W_all[keep]
    if rows.size < 2 or not np.all(np.isfinite(W)) or W.sum() <= 0:
        raise WeightError(f"policy '{policy}': {rows.size} usable rows with fresh draws; the weights "
                          "over them are empty, zero or non-finite")
    W = W / W.mean()
    pos = np.full(ctx.data.n, -1)
    pos[rows] = np.arange(rows.size)
    fpos = pos[view.row]
    sel = fpos >= 0
    labelled = ctx.labelled[rows] & np.isfinite(ctx.data.oracle_labels[rows])
    inputs = DRInputs(ctx=ctx, policy=policy, view=view, rows=rows, S=ctx.data.judge_scores[rows],
                      R=ctx.R[rows], R_fold=ctx.R_fold[:, rows], R_oof=ctx.R_oof[rows],
                      folds=ctx.folds[rows], W=W, L=labelled,
                      Y=np.where(labelled, ctx.data.oracle_labels[rows], 0.0), fpos=fpos[sel],
                      fS=view.judge[sel], ffolds=ctx.folds[view.row[sel]],
                      n_draws=np.bincount(fpos[sel], minlength=rows.size), dropped=dropped,
                      weights_source=source)
    ctx._cache[key] = (weights, inputs)  # holding ``weights`` keeps its id from being reused
    return inputs


@dataclass
class DRResult:
    """One DR component: estimate, per-prompt IF over ``inputs.rows``, jackknife, details, assumptions,
    and the per-row weighted residual of its correction (for the orthogonality score)."""

    estimate: float
    influence: np.ndarray
    jackknife: np.ndarray | None
    details: dict
    assumptions: list[str]
    residual: np.ndarray  # W (R - g) per row, g the outcome model of the correction
    oracle_channel: tuple | None = None  # (influence, jackknife) with the oracle part as a jackknife


def _score_ci(values: np.ndarray, z: float = 1.959964) -> dict:
    """Mean of per-row values with its SE and a 95% normal interval (the orthogonality score)."""
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return {"mean": mean, "se": se, "ci_lower": mean - z * se, "ci_upper": mean + z * se}


def assemble(inp: DRInputs, g: CrossFit, R: np.ndarray, extra: dict[str, np.ndarray] | None = None):
    """psi = mean gbar + mean W (R - g) + sum_t mean t; returns (psi, phi, parts).

    ``extra`` maps term names to per-row arrays (e.g. the orthogonalising term).
    phi uses the Hajek form W (R - g - c) for the weighted correction.
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


def _dr_family(inp: DRInputs, model: OutcomeModel, omega: str | None, orthogonal: bool) -> DRResult:
    """The shared computation of dr-cpo / mrdr / oc-dr-cpo."""
    m = inp.weight_model().logged if orthogonal else None

    def extra(R: np.ndarray) -> dict:
        return {"orthogonalising_term": (inp.W - m) * (R - inp.R_oof)} if orthogonal else {}

    g = inp.outcome(model, None, omega)
    psi, phi, parts = assemble(inp, g, inp.R, extra(inp.R))
    jack = _jackknife(inp, lambda k: assemble(inp, inp.outcome(model, k, omega), inp.R_fold[k],
                                              extra(inp.R_fold[k]))[0])
    details = {**parts, "orthogonality_score": _score_ci(inp.W * (inp.R - g.logged)),
               "outcome_model": _model_name(model)}
    if omega:
        details["mrdr_omega"] = omega
    assumptions = list(BASE_ASSUMPTIONS)
    if orthogonal:
        assumptions.append("m(S) = E[W | S] is estimated consistently (orthogonalising term)")
    return DRResult(psi, phi, jack, details, assumptions, inp.W * (inp.R - g.logged))


def _model_name(model: OutcomeModel) -> str:
    return getattr(model, "name", type(model).__name__)


def label_cross_fitted_outcome(inp: DRInputs, model: OutcomeModel) -> CrossFit:
    """g^(k) fitted on the rows outside fold k with the rewards f^(-k)(S), applied to fold k.

    No prediction for fold k depends on fold k's oracle labels (at 100% coverage,
    where R = Y, this is the ordinary cross-fitted outcome model).
    """
    if not inp.ctx.oua:
        return inp.outcome(model)
    logged, fresh = np.empty(inp.n), np.empty(inp.fS.size)
    for k in range(inp.ctx.n_folds):
        fit = inp.outcome(model, k)
        sel, fsel = inp.folds == k, inp.ffolds == k
        logged[sel], fresh[fsel] = fit.logged[sel], fit.fresh[fsel]
    return CrossFit(logged=logged, fresh=fresh)


def dr_cpo(inp: DRInputs, model: OutcomeModel) -> DRResult:
    """dr-cpo on prepared inputs (see the module docstring for the formula)."""
    return _dr_family(inp, model, None, orthogonal=False)


def mrdr(inp: DRInputs, model: OutcomeModel, omega: str = "w") -> DRResult:
    """mrdr: outcome model fitted with sample weights omega(W) ('w' or 'w2')."""
    if omega not in ("w", "w2"):
        raise ValueError(f"mrdr omega must be 'w' or 'w2', got {omega!r}")
    return _dr_family(inp, model, omega, orthogonal=False)


def oc_dr_cpo(inp: DRInputs, model: OutcomeModel) -> DRResult:
    """oc-dr-cpo: dr-cpo + mean (W - m(S)) (R - f^(oof)(S))."""
    return _dr_family(inp, model, None, orthogonal=True)


def label_term_jackknife(inp: DRInputs, psi: float, t: np.ndarray, variance: float) -> np.ndarray:
    """Jackknife-form pseudo-values of the label-term mean, for stacking.

    Delete-a-fold means psi - mean(t) + mean_{i not in fold k} t_i give the fold
    pattern; their spread is rescaled so that (K-1)/K sum_k (psi_k - mean)^2 equals
    ``variance`` (tr-cpo passes var(phi)/n - var(phi - t)/n, so that the IF without
    the label term plus this jackknife reproduce its SE exactly). The raw
    delete-a-fold spread is inflated: each fold's residuals share that fold's
    calibrator error, which the fold's direct part cancels in the estimate but not
    in t alone (measured 1.5x).
    """
    k = inp.ctx.n_folds
    sums = np.bincount(inp.folds, weights=t, minlength=k)
    counts = np.bincount(inp.folds, minlength=k)
    raw = (t.sum() - sums) / np.maximum(inp.n - counts, 1)
    dev = raw - raw.mean()
    spread = (k - 1) / k * float(np.sum(dev ** 2))
    scale = np.sqrt(max(variance, 0.0) / spread) if spread > 0 else 0.0
    return psi + dev * scale


def tr_cpo(inp: DRInputs, model: OutcomeModel) -> DRResult:
    """tr-cpo, fully cross-fitted in the oracle labels (double machine learning).

    psi = mean gbar^(k) + mean W (R^oof - g^(k)) + mean t,  t = (L / pi_L(S)) m(S) (Y - R^oof),
    where for a prompt in fold k every nuisance is fitted without fold k's labels:
    R^oof = f^(-k)(S), g^(k) from :func:`label_cross_fitted_outcome`. The
    orthogonalising term (W - m)(R - f^(oof)) vanishes because R = f^(oof) here.
    The estimate is Neyman-orthogonal to the calibration (d/df of the direct part,
    E_0[m h], cancels that of the label term, -E_0[(L / pi_L) m h]), so its oracle
    uncertainty is the label term's own sampling variance, which its influence
    function phi already contains: its jackknife is constant (Var_oracle = 0; a
    varying one would count it twice; measured coverage 0.94-0.96 at 5-25% labels),
    which also lets a paired comparison with the base policy keep the base's OUA. For stacked-dr, ``oracle_channel`` gives the same
    variance in jackknife form (IF without the label term + :func:`label_term_jackknife`),
    so that it can be combined with the other components' jackknifes.
    Assumes labels missing at random given S.
    """
    m = inp.weight_model().logged
    pi_L = inp.label_propensity()
    g = label_cross_fitted_outcome(inp, model)
    label = inp.L / pi_L * m * (inp.Y - inp.R_oof)
    psi, phi, parts = assemble(inp, g, inp.R_oof, {"label_term": label})
    channel, jack = None, None
    if inp.ctx.oua:
        # A constant jackknife: Var_oracle = 0 for the estimate itself (its IF holds the
        # oracle part), while a paired comparison with a jackknife estimator (the base
        # policy) still gets that estimator's oracle variance instead of dropping it.
        jack = np.full(inp.ctx.n_folds, psi)
        sampling = phi - (label - label.mean())
        oracle_var = (np.var(phi, ddof=1) - np.var(sampling, ddof=1)) / inp.n
        channel = (sampling, label_term_jackknife(inp, psi, label, oracle_var))
    details = {**parts, "orthogonality_score": _score_ci(inp.W * (inp.R_oof - g.logged)),
               "outcome_model": _model_name(model), "n_labels": int(inp.L.sum()),
               "label_propensity_mean": float(pi_L.mean()),
               "label_term_se": float(label.std(ddof=1) / np.sqrt(inp.n)),
               "oracle_uncertainty": "in the influence function (label term); OUA jackknife constant"}
    assumptions = list(BASE_ASSUMPTIONS) + [
        "oracle labels are missing at random given the judge score (label propensity pi_L(S))",
        "m(S) = E[W | S] is estimated consistently (label term)"]
    return DRResult(psi, phi, jack, details, assumptions, inp.W * (inp.R_oof - g.logged), channel)


def finish(inp: DRInputs, result: DRResult) -> PolicyEstimate:
    """Add the probe-label residual correction (if any) and wrap as a :class:`PolicyEstimate`.

    Also records the direct-vs-IPS split: ``ips_estimate_same_weights`` = mean W R
    next to the DR ``direct_part``; far apart means the weights and the outcome
    model disagree (read the orthogonality score and the weight diagnostics).
    """
    ctx = inp.ctx
    delta, phi_delta, jack_delta, n_probe = residual_correction(ctx, inp.view, inp.rows)
    psi, phi, jack = result.estimate, result.influence, result.jackknife
    details = {**result.details, "weights": inp.weights_source, "n_fresh_draws": int(inp.fpos.size),
               "fresh_draws_per_prompt": float(inp.n_draws.mean()),
               "ips_estimate_same_weights": float(np.mean(inp.W * inp.R))}
    assumptions = list(result.assumptions)
    if n_probe:
        psi, phi = psi + delta, phi + phi_delta
        jack = None if jack is None else jack + jack_delta
        details.update(residual_correction=delta, n_probe_labels=n_probe)
        assumptions = [a for a in assumptions if not a.startswith("surrogacy")]
        assumptions.append(f"residual correction on {n_probe} probe labels of the target's fresh draws "
                           "removes calibration transport (surrogacy) bias")
    return PolicyEstimate(estimate=float(psi), influence=phi, cluster_ids=ctx.data.prompt_ids[inp.rows],
                          jackknife=jack, n_used=inp.n, weights=inp.W, details=details,
                          assumptions=assumptions, dropped=dict(inp.dropped), weight_rows=inp.rows)


class DREstimatorBase(Estimator):
    """Shared constructor and ``estimate`` of the DR family.

    outcome_model : an OutcomeModel (default cross-fitted isotonic of R on S).
    weights : 'calibrated' (SIMCal-W, default), 'raw', 'clipped' or a callable
        ``(ctx, policy) -> weights over ctx.rows(policy)`` (a deliberate override).
    """

    weight_role = "correction"
    needs_fresh_draws = True

    def __init__(self, outcome_model: OutcomeModel | None = None, weights: WeightSource = "calibrated"):
        self.outcome_model = outcome_model or IsotonicOutcomeModel()
        self.weights = weights

    def compute(self, inp: DRInputs) -> DRResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def estimate(self, ctx: AnalysisContext, policy: str) -> PolicyEstimate:
        inp = prepare_dr(ctx, policy, self.weights)
        return finish(inp, self.compute(inp))


@register
class DRCPOEstimator(DREstimatorBase):
    """dr-cpo: direct part on fresh draws + weighted residual correction on logged rows."""

    name = "dr-cpo"

    def compute(self, inp: DRInputs) -> DRResult:
        return dr_cpo(inp, self.outcome_model)


@register
class MRDREstimator(DREstimatorBase):
    """mrdr: dr-cpo with the outcome model fitted with sample weights omega(W)."""

    name = "mrdr"

    def __init__(self, outcome_model: OutcomeModel | None = None, weights: WeightSource = "calibrated",
                 omega: str = "w"):
        super().__init__(outcome_model, weights)
        self.omega = omega

    def compute(self, inp: DRInputs) -> DRResult:
        return mrdr(inp, self.outcome_model, self.omega)


@register
class OCDRCPOEstimator(DREstimatorBase):
    """oc-dr-cpo: dr-cpo plus the calibration-orthogonalising term."""

    name = "oc-dr-cpo"

    def compute(self, inp: DRInputs) -> DRResult:
        return oc_dr_cpo(inp, self.outcome_model)


@register
class TRCPOEstimator(DREstimatorBase):
    """tr-cpo: oc-dr-cpo plus the oracle-label term."""

    name = "tr-cpo"

    def compute(self, inp: DRInputs) -> DRResult:
        return tr_cpo(inp, self.outcome_model)
