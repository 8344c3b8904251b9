"""``stacked-dr``: the minimum-variance convex combination of the DR family (statistics.md 5-6).

Components J = {dr-cpo, tmle, mrdr, oc-dr-cpo, tr-cpo}, all computed on the same
used rows, fold map, weights and outcome model (so their influence functions are
aligned by prompt_id by construction), each with the target's probe labels applied
(:func:`cje.estimators.dr.with_probes`) before stacking. With Phi the n x J matrix of
per-prompt influence values and Psi^(-k) the K x J OUA jackknife estimates (a
component without one -- at 100% oracle coverage only tr-cpo's label term still
depends on the calibrator -- contributes a constant column),

    V = cov(Phi) / n + s s',  s_j = sqrt((K-1)/K sum_k (Psi_j^(-k) - mean_j)^2),

the variance of a combination a' psi with influence Phi a when the components' oracle
errors are perfectly correlated (an upper bound; :func:`stack` says why not the raw
jackknife covariance); its diagonal is each component's SE_total^2. Every entry is
estimated (each component's own IF and jackknife; tr-cpo's variance is its label-term IF
plus its jackknife, no longer an assumed constant), so the weights
a = argmin_{a in simplex} a' V a (:func:`cje.stats.weights.simplex_min_variance`) select only on
estimated variances (statistics.md 5, revised). No separate Monte-Carlo
term is added for the fresh draws: the per-prompt mean in each IF already carries it.

The combination rests on the union of the assumptions of the components it puts
weight on: a stack that mixes tr-cpo with components that rest on transport still rests
on transport.

References
----------
Efron, B., & Stein, C. (1981). The jackknife estimate of variance. The Annals of
Statistics, 9(3), 586-596.
Landesberg et al. (2025). Causal Judge Evaluation. arXiv:2512.11150.
"""

from __future__ import annotations

import numpy as np

from cje.estimators.base import register
from cje.estimators.dr import DREstimatorBase, DRResult, _score_ci, dr_cpo, mrdr, oc_dr_cpo, tr_cpo, with_probes
from cje.estimators.dr_inputs import DRInputs
from cje.estimators.tmle import tmle
from cje.stats.calibration import MIN_ORACLE_LABELS
from cje.stats.weights import simplex_min_variance

__all__ = ["StackedDREstimator", "stack", "oracle_channel", "COMPONENTS"]

COMPONENTS = ("dr-cpo", "tmle", "mrdr", "oc-dr-cpo", "tr-cpo")
_FUNCS = {"dr-cpo": dr_cpo, "tmle": tmle, "mrdr": mrdr, "oc-dr-cpo": oc_dr_cpo, "tr-cpo": tr_cpo}
_WEIGHT_FLOOR = 1e-9  # a component below this stacking weight does not count as used


def stack(estimates: np.ndarray, influences: list[np.ndarray], jackknifes: list[np.ndarray | None],
          n_folds: int, selection_influences: list[np.ndarray] | None = None):
    """Stacking weights a, the reported V, and the combination's influence and jackknife.

    Selection: a = argmin_{a in simplex} a' cov(Phi_sel) a / n. The oracle (calibration) error
    is common to the components, so it enters as a term the selection cannot exploit: each
    component's jackknife variance rests on K - 1 = 4 df, and minimising over them picked
    whichever was underestimated by chance (measured: weight 0 or 1 on tr-cpo by replicate,
    SE / Monte-Carlo sd 0.84, per-policy coverage 0.905). tr-cpo's label-term noise, which is
    estimated from all labelled rows, stays in its selection IF.

    Reported: V = cov(Phi) / n + s s', s_j = sqrt(Var_oracle,j) from component j's own
    jackknife, the oracle errors taken as perfectly correlated (an upper bound on a' C_J a by
    Cauchy-Schwarz). The combination's jackknife is the pattern sum_j a_j (Psi_j^(-k) - mean)
    rescaled so that its oracle variance is (a' s)^2, so that ``cje.stats.inference`` reports
    SE_total^2 = a' V a.

    Parameters
    ----------
    estimates : ndarray of shape (J,)
        Each component's estimate.
    influences : list of ndarray
        Each component's influence over the same n prompts.
    jackknifes : list of (ndarray or None)
        Each component's jackknife (K values), or None (a constant: no calibrator in it).
    n_folds : int
        Number K of folds.
    selection_influences : list of ndarray or None, default=None
        The influences the weights are selected on (default: ``influences``).

    Returns
    -------
    alpha : ndarray of shape (J,)
        The stacking weights (on the simplex).
    V : ndarray of shape (J, J)
        The reported covariance.
    influence : ndarray
        Phi a, the combination's influence.
    jackknife : ndarray or None
        The combination's jackknife, None when no component has one.
    """
    phi = np.column_stack(influences)
    n = phi.shape[0]
    cov = np.atleast_2d(np.cov(phi, rowvar=False, ddof=1)) / n
    sel = phi if selection_influences is None else np.column_stack(selection_influences)
    alpha = simplex_min_variance(np.atleast_2d(np.cov(sel, rowvar=False, ddof=1)) / n)
    if all(j is None for j in jackknifes):
        return alpha, cov, phi @ alpha, None
    J = np.column_stack([np.full(n_folds, e) if j is None else np.asarray(j, float)
                         for e, j in zip(estimates, jackknifes)])
    centred = J - J.mean(axis=0)
    s = np.sqrt((n_folds - 1) / n_folds * np.sum(centred ** 2, axis=0))
    V = cov + np.outer(s, s)
    pattern = centred @ alpha
    spread = np.sqrt((n_folds - 1) / n_folds * np.sum(pattern ** 2))
    if spread <= 1e-15 * max(float(s.max()), 1e-300):  # the patterns cancel: use the largest contributor's
        pattern = centred[:, int(np.argmax(alpha * s))]
        spread = np.sqrt((n_folds - 1) / n_folds * np.sum(pattern ** 2))
    target = float(alpha @ s)
    jack = J.mean(axis=0) @ alpha + (pattern * (target / spread) if spread > 0 else 0.0)
    return alpha, V, phi @ alpha, jack


def oracle_channel(inp: DRInputs, result: DRResult) -> tuple[np.ndarray, np.ndarray | None]:
    """(influence, jackknife) of a component with all its oracle uncertainty in the jackknife.

    tr-cpo's label-term IF is oracle-label noise: the same randomness as the other
    components' calibration error, which they carry in their jackknifes. Stacked with the IF
    of one and the jackknife of the others, the two would be treated as uncorrelated while
    they are positively correlated (a selection effect: measured coverage 0.88-0.90). So the
    label part leaves the IF and joins the jackknife: the pattern of delete-a-fold means of the
    label IF plus the component's own jackknife deviations, rescaled so that the oracle
    variance equals the component's total variance minus that of the remaining IF. Its own
    SE_total is unchanged; only the cross-component correlation is now taken as +1 (s s').

    Parameters
    ----------
    inp : DRInputs
        The policy's aligned inputs.
    result : DRResult
        One component (probe labels applied).

    Returns
    -------
    influence : ndarray
        The influence without the label part (unchanged when there is none or no jackknife).
    jackknife : ndarray or None
        The jackknife carrying the label part.
    """
    if result.label_influence is None or result.jackknife is None:
        return result.influence, result.jackknife
    k = inp.ctx.n_folds
    phi, t = result.influence, result.label_influence
    rest = phi - t
    jack = np.asarray(result.jackknife, float)
    total = np.var(phi, ddof=1) / inp.n + (k - 1) / k * np.sum((jack - jack.mean()) ** 2)
    target = max(total - np.var(rest, ddof=1) / inp.n, 0.0)
    sums, counts = np.bincount(inp.folds, weights=t, minlength=k), np.bincount(inp.folds, minlength=k)
    deleted = (t.sum() - sums) / np.maximum(inp.n - counts, 1)
    pattern = (deleted - deleted.mean()) + (jack - jack.mean())
    spread = (k - 1) / k * float(np.sum(pattern ** 2))
    scale = np.sqrt(target / spread) if spread > 0 else 0.0
    return rest, result.estimate + pattern * scale


def _floor_at_best_component(alpha: np.ndarray, V: np.ndarray, jack: np.ndarray | None, n_folds: int):
    """Never report a stacked variance below the smallest component's.

    The weights are chosen to minimise the estimated V on the same data, so a' V a is
    optimistic (measured mean SE / Monte-Carlo sd 0.84-0.94 and per-policy coverage down to
    0.905 with a' V a alone). The floor min_j V_jj is what the best component alone reports.
    The extra variance goes into the oracle (jackknife) part; returns (jackknife, floored).
    """
    total, floor = float(alpha @ V @ alpha), float(np.min(np.diag(V)))
    if jack is None or total >= floor:
        return jack, False
    centred = jack - jack.mean()
    spread = (n_folds - 1) / n_folds * float(np.sum(centred ** 2))
    oracle_target = spread + (floor - total)
    scale = np.sqrt(oracle_target / spread) if spread > 0 else 0.0
    return jack.mean() + centred * scale, scale > 0


@register
class StackedDREstimator(DREstimatorBase):
    """stacked-dr: convex combination of the DR components with minimum total variance.

    Parameters
    ----------
    outcome_model : OutcomeModel or None, default=None
        The outcome model of every component (default cross-fitted isotonic of R on S).
    weights : str or callable, default='calibrated'
        The correction weights of every component (as in :class:`~cje.estimators.dr.DREstimatorBase`).
    components : tuple of str, default=COMPONENTS
        The components to stack, a subset of :data:`COMPONENTS`.

    Raises
    ------
    ValueError
        A component name is not one of :data:`COMPONENTS`.
    """

    name = "stacked-dr"

    def __init__(self, outcome_model=None, weights="calibrated", components: tuple[str, ...] = COMPONENTS):
        super().__init__(outcome_model, weights)
        unknown = set(components) - set(_FUNCS)
        if unknown:
            raise ValueError(f"unknown stacked-dr components {sorted(unknown)}; choose from {COMPONENTS}")
        self.components = tuple(components)

    def compute_with_probes(self, inp: DRInputs) -> DRResult:
        """Stack the probe-adjusted components (probes are applied once, per component).

        A component whose label term rests on fewer effective labels than
        ``MIN_ORACLE_LABELS`` is excluded when more than one component is stacked (its variance
        cannot be estimated). The reported variance is floored at the best component's (the weights were chosen on
        the same data, so a' V a alone is optimistic).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            Details record the stacking weights, the component estimates and SEs, and any exclusion.
        """
        results = {c: with_probes(inp, _FUNCS[c](inp, self.outcome_model)) for c in self.components}
        excluded = {c: r.details["label_effective_n"] for c, r in results.items()
                    if r.details.get("label_effective_n", np.inf) < MIN_ORACLE_LABELS and len(results) > 1}
        for c in excluded:  # its variance rests on too few effective labels to be estimated
            results.pop(c)
        names = list(results)
        estimates = np.array([results[c].estimate for c in names])
        channels = [oracle_channel(inp, results[c]) for c in names]
        alpha, V, phi, jack = stack(estimates, [ch[0] for ch in channels], [ch[1] for ch in channels],
                                    inp.ctx.n_folds, [results[c].influence for c in names])
        jack, floored = _floor_at_best_component(alpha, V, jack, inp.ctx.n_folds)
        psi = float(alpha @ estimates)
        se = np.sqrt(np.clip(np.diag(V), 0, None))
        used = [c for a, c in zip(alpha, names) if a > _WEIGHT_FLOOR]
        details = {
            "stacking_weights": {c: float(a) for a, c in zip(alpha, names)},
            "component_estimates": {c: results[c].estimate for c in names},
            "component_se": {c: float(s) for c, s in zip(names, se)},
            "stacked_se": float(np.sqrt(max(alpha @ V @ alpha, 0.0))),
            "se_floored_at_best_component": bool(floored),
            "direct_part": float(sum(a * results[c].details["direct_part"] for a, c in zip(alpha, names))),
            "weighted_correction": float(sum(a * results[c].details["weighted_correction"]
                                             for a, c in zip(alpha, names))),
            "orthogonality_score": _score_ci(sum(a * results[c].residual for a, c in zip(alpha, names))),
            "outcome_model": results[names[0]].details["outcome_model"],
        }
        if excluded:
            details["excluded_components"] = {c: f"label term on {n:.1f} effective labels (< {MIN_ORACLE_LABELS}): "
                                                  "its variance cannot be estimated" for c, n in excluded.items()}
        for key in ("residual_correction", "n_probe_labels", "label_pool_weight"):
            if key in results[names[0]].details:
                details[key] = results[names[0]].details[key]
        rests_on = list(dict.fromkeys(a for c in used for a in results[c].rests_on))
        if "transport" in rests_on and "transport_or_overlap" in rests_on:
            rests_on.remove("transport_or_overlap")  # the weaker claim is implied by the stronger one
        notes = {}
        for c in used:
            for key, text in results[c].notes.items():
                notes.setdefault(key, f"{c}: {text}")
        residual = sum(a * results[c].residual for a, c in zip(alpha, names))
        return DRResult(psi, phi, jack, details, rests_on, residual, notes)

    def compute(self, inp: DRInputs) -> DRResult:
        """The stacked estimate (:meth:`compute_with_probes`: probes are applied per component).

        Parameters
        ----------
        inp : DRInputs
            The policy's aligned inputs.

        Returns
        -------
        DRResult
            The stacked component.
        """
        return self.compute_with_probes(inp)
