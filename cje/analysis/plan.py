"""How many oracle labels (and probe labels) a target precision needs, from a pilot analysis.

Every variance is read from the pilot's estimates.json (never recomputed):
``se_without_oua`` (cluster-robust SE over prompts, SE_b) and ``oracle_variance``
(the delete-a-fold jackknife variance of the calibration, V_o) of each policy,
the same two parts of each paired comparison (``metadata.comparisons``), the
pilot's label count m0 (``n_oracle``), folds K, level and row count n. Several
pilots (e.g. seeds) are pooled by averaging SE_b^2 and V_o.

Model of a CI half-width as a function of the oracle labels m (n fixed)::

    SE(m)^2        = SE_b^2 + V_o * m0 / m
    df(m)          = Welch-Satterthwaite(SE_b^2 on n_c - 1 df, V_o m0/m on K - 1 df)
                     (cje.stats.inference.satterthwaite_df, the analysis's own df)
    half_width(m)  = t_{(1 + level)/2, df(m)} * SE(m)

Why these scalings: SE_b is the sampling error of the mean over n prompts of the
calibrated rewards and does not depend on how many of them are labelled; V_o is
the error of the calibration fitted on m labels, and a mean of a fitted
regression function converges at sqrt(m) (van der Vaart, Asymptotic Statistics,
1998, ch. 25), so V_o scales as 1/m. Estimators whose influence function uses
the labels themselves (tr-cpo's label term, the direct residual correction with
probe labels) have part of SE_b shrinking with m too: for them the plan is
conservative above m0. The half-width cannot drop below the floor
t_{n_c - 1} * SE_b however many labels: then only more prompts help.

* Target half-width h: the smallest integer m in [10, n] with half_width(m) <= h (the
  calibration needs at least 10 labels).
* Separating a from b by a margin delta with power 1 - beta (two-sided level
  alpha = 1 - level): the smallest m with
  delta >= (t_{1 - alpha/2, df(m)} + t_{1 - beta, df(m)}) * SE_ab(m)
  (the usual normal-approximation power of a t test, e.g. Chow, Shao & Wang,
  Sample Size Calculations in Clinical Research, 2008, ch. 3), SE_ab from the comparison.
* Probe labels per target, for the transport audit: an equivalence test that
  passes when its CI delta_hat +- w_k lies inside +-e, e = min(margin, SE(m)) (the
  estimate's SE at the plan). When the transport holds, delta_hat = mean(Y - f(S'))
  carries the probe noise and the calibration's own error on that target, whose variance
  is the estimate's V_o(m) = V_o m0 / m, so delta_hat ~ N(0, s_k^2), s_k^2 = V_o(m) +
  sigma_r^2 / k (sigma_r the residual SD: the pilot's audit ``se_labels`` * sqrt(n_probe);
  without probes in the pilot, the calibration's out-of-fold RMSE). The audit's interval
  counts both parts, w_k = t_{0.95, df} s_k (the one-sided TOST of the one decision rule,
  :func:`cje.checks.audits.decide`, at its fixed level; df Welch-Satterthwaite of k - 1 and K - 1), and
  P(pass) = 2 Phi((e - w_k) / s_k) - 1. The plan is the smallest k with P(pass) >= probe
  power; when even k -> infinity cannot reach it (e < (t + z) sqrt(V_o(m))) no probe
  count helps until more oracle labels shrink V_o(m). A separation needs the probes of
  each target policy in the pair (the base needs none), at the pair's plan m.
* The pilot's status of each target (GOOD / WARNING / CRITICAL, the worst over pooled
  pilots; for a pair, the worse of its target policies) is shown beside the plan. Labels
  shrink an interval; they do not repair a CRITICAL estimate (its assumptions failed),
  so such a plan is flagged (``Plan.critical``) and ``cje plan`` refuses it unless
  ``--allow-critical``.

References
----------
van der Vaart, A. W. (1998). Asymptotic Statistics. Cambridge University Press, ch. 25.
Chow, S.-C., Shao, J., & Wang, H. (2008). Sample Size Calculations in Clinical Research
(2nd ed.). Chapman & Hall/CRC, ch. 3.
Welch, B. L. (1947). The generalization of 'Student's' problem when several different
population variances are involved. Biometrika, 34(1/2), 28-35.
Efron, B., & Stein, C. (1981). The jackknife estimate of variance. The Annals of
Statistics, 9(3), 586-596.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from cje.checks.audits import PASS_ALPHA
from cje.errors import InputError, OptionError
from cje.results.decision import BASE, find_comparison, level_label
from cje.results.files import read_estimates
from cje.stats.calibration import MIN_ORACLE_LABELS
from cje.stats.inference import satterthwaite_df, welch_satterthwaite

__all__ = ["VarianceParts", "Target", "Plan", "plan_labels", "pilot_payloads", "half_width_curve"]


@dataclass(frozen=True)
class VarianceParts:
    """What the model needs of one estimate (a policy) or one difference (a comparison).

    Parameters
    ----------
    name : str
        The policy, or ``"a - b"`` for a comparison.
    se_base : float
        SE_b (``se_without_oua``), pooled over pilots.
    oracle_variance : float
        V_o at the pilot's m0 (0 when the pilot skipped OUA).
    df_base : float
        n_c - 1.
    pilot_half_width : float or None, default=None
        The mean pilot CI half-width, for reference.
    """

    name: str
    se_base: float            # SE_b (se_without_oua), pooled over pilots
    oracle_variance: float    # V_o at the pilot's m0 (0 when the pilot skipped OUA)
    df_base: float            # n_c - 1
    pilot_half_width: float | None = None


def _t(df: np.ndarray | float, prob: float) -> np.ndarray:
    return special.stdtrit(df, prob)


def half_width_curve(parts: VarianceParts, labels: np.ndarray, m0: float, n_folds: int,
                     level: float) -> tuple[np.ndarray, np.ndarray]:
    """(half-width, df) at each label count in ``labels`` (module docstring).

    half_width(m) = t_{(1 + level)/2, df(m)} * sqrt(SE_b^2 + V_o m0 / m), with one df per
    count from :func:`cje.stats.inference.satterthwaite_df`, so keep ``labels`` to plot-grid sizes.

    Parameters
    ----------
    parts : VarianceParts
        SE_b, V_o and the base df of the target.
    labels : array-like of int
        Oracle label counts m.
    m0 : float
        The pilot's label count.
    n_folds : int
        Number K of folds (V_o has K - 1 df).
    level : float
        The confidence level.

    Returns
    -------
    half_width : ndarray
        One per count.
    df : ndarray
        The Welch-Satterthwaite df of each.

    References
    ----------
    Welch, B. L. (1947). The generalization of 'Student's' problem when several different
    population variances are involved. Biometrika, 34(1/2), 28-35.
    """
    m = np.asarray(labels, float)
    vb = parts.se_base ** 2
    vo = parts.oracle_variance * m0 / m
    df = np.array([satterthwaite_df(vb, parts.df_base, v, n_folds - 1) for v in np.atleast_1d(vo)])
    return _t(df, 0.5 + level / 2) * np.sqrt(vb + vo), df


@dataclass
class Target:
    """One planned quantity: a policy's half-width or a pair's separation.

    Parameters
    ----------
    name : str
        The policy, or ``"a - b"``.
    kind : {'half_width', 'separation'}
        What is planned.
    parts : VarianceParts
        Its variance parts from the pilot.
    goal : float
        Target half-width, or the margin to detect.
    labels_needed : int or None
        The oracle labels needed; None = not reachable with n rows.
    half_width_at_plan : float
        At labels_needed, or with every row labelled when unreachable.
    floor_half_width : float
        With infinitely many labels (sampling error only).
    probe_labels : int or None, default=None
        Probe labels for the transport audit (None: none reach the audit's power, or no fresh draws).
    probe_note : str, default=''
        Where the probe plan's residual SD came from, or why there is none.
    probe_mark : str, default=''
        What the table's probes column shows when ``probe_labels`` is None: ``never`` (no
        count reaches the audit's power at this oracle budget) or ``n/a`` (no fresh draws,
        no residual SD in the pilot).
    status : str or None, default=None
        The pilot's status of the target (GOOD, WARNING or CRITICAL; the worst over pilots and,
        for a pair, over its target policies); None when the pilot has none.
    reasons : list of str
        The pilot's reasons for that status.
    """

    name: str
    kind: str                  # 'half_width' | 'separation'
    parts: VarianceParts
    goal: float                # target half-width, or the margin to detect
    labels_needed: int | None  # None = not reachable with n rows
    half_width_at_plan: float     # at labels_needed, or with every row labelled when unreachable
    floor_half_width: float       # with infinitely many labels (sampling error only)
    probe_labels: int | None = None
    probe_note: str = ""
    probe_mark: str = ""
    status: str | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def probes_shown(self) -> str:
        """The probes column: the count, or why there is none (``never``, ``n/a``)."""
        return str(self.probe_labels) if self.probe_labels is not None else (self.probe_mark or "n/a")

    @property
    def reachable(self) -> bool:
        """True when some label count up to n reaches the goal."""
        return self.labels_needed is not None


@dataclass
class Plan:
    """The plan: one :class:`Target` per policy (or pair), and what the pilot was.

    Parameters
    ----------
    estimator : str
        The pilot's estimator.
    n_samples : int
        Logged rows n.
    pilot_labels : float
        The pilot's oracle label count m0 (averaged over pilots).
    n_folds : int
        Number K of folds.
    level : float
        The confidence level.
    n_pilots : int
        Pilot runs pooled.
    power : float
        The power of the separation plan.
    targets : list of Target
        The planned quantities.
    sources : list of str
        Where each pilot came from.
    """

    estimator: str
    n_samples: int
    pilot_labels: float
    n_folds: int
    level: float
    n_pilots: int
    power: float
    targets: list[Target] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def critical(self) -> list[Target]:
        """The targets whose pilot estimate is CRITICAL: labels do not repair them."""
        return [t for t in self.targets if t.status == "CRITICAL"]

    @property
    def labels_needed(self) -> int | None:
        """Labels for every target at once (the largest), None when one is unreachable."""
        needed = [t.labels_needed for t in self.targets]
        return None if not needed or None in needed else max(needed)

    def curve(self, target: Target, labels: np.ndarray) -> np.ndarray:
        """Half-width of ``target`` at each label count in ``labels`` (:func:`half_width_curve`).

        Parameters
        ----------
        target : Target
            A planned quantity.
        labels : array-like of int
            Oracle label counts.

        Returns
        -------
        ndarray
            The half-width at each count.
        """
        return half_width_curve(target.parts, labels, self.pilot_labels, self.n_folds, self.level)[0]

    def to_rows(self) -> list[dict]:
        """One dict per target (the columns of the printed table).

        Returns
        -------
        list of dict
            The table's rows.
        """
        return [{"target": t.name, "kind": t.kind, "pilot_status": t.status, "goal": t.goal,
                 "pilot_half_width": t.parts.pilot_half_width,
                 "se_without_oua": t.parts.se_base, "oracle_variance": t.parts.oracle_variance,
                 "labels_needed": t.labels_needed,
                 "oracle_coverage": None if t.labels_needed is None else t.labels_needed / self.n_samples,
                 "half_width_at_plan": t.half_width_at_plan, "floor_half_width": t.floor_half_width,
                 "probe_labels": t.probe_labels} for t in self.targets]

    def table(self) -> str:
        """The small table ``cje plan`` prints.

        Returns
        -------
        str
            The table as text.
        """

        lv = level_label(self.level)
        lines = [f"pilot: {self.estimator}, n = {self.n_samples} logged rows, {self.pilot_labels:g} oracle labels, "
                 f"K = {self.n_folds} folds, {lv} CIs ({self.n_pilots} pilot run(s) pooled)",
                 f"model: half-width(m) = t(df(m)) * sqrt(se_without_oua^2 + oracle_variance * "
                 f"{self.pilot_labels:g} / m)", ""]
        head = (f"{'target':<34}{'status':>9}{'goal':>8}{'pilot ±':>9}{'se_w/o_oua':>11}{'oracle var':>11}{'labels':>8}"
                f"{'coverage':>9}{'± at plan':>10}{'floor ±':>9}{'probes':>8}")
        lines.append(head)
        for r, t in zip(self.to_rows(), self.targets):
            goal = f"±{t.goal:.3f}" if t.kind == "half_width" else f"Δ{t.goal:.3f}"
            lines.append(f"{t.name:<34}{t.status or '':>9}{goal:>8}{_f(r['pilot_half_width'], '.4f'):>9}"
                         f"{_f(r['se_without_oua'], '.5f'):>11}{_f(r['oracle_variance'], '.2e'):>11}"
                         f"{'> n' if t.labels_needed is None else t.labels_needed:>8}"
                         f"{_f(r['oracle_coverage'], '.3f'):>9}{_f(r['half_width_at_plan'], '.4f'):>10}"
                         f"{_f(t.floor_half_width, '.4f'):>9}{t.probes_shown:>8}")
        need = self.labels_needed
        lines.append("")
        if need is None:
            lines.append(f"Not every target is reachable with these {self.n_samples} prompts ('> n': even with every "
                         "logged row labelled, '± at plan', the goal is missed); more prompts are needed. 'floor ±' "
                         "is the limit with unlimited labels.")
        else:
            lines.append(f"Oracle labels for every target: {need} of {self.n_samples} logged rows "
                         f"(oracle coverage {need / self.n_samples:.3f}).")
        if any(t.kind == "separation" for t in self.targets):
            lines.append(f"Separation: the difference's CI half-width must reach margin * t / (t + t_power) "
                         f"to detect the margin with power {self.power:g}.")
        notes = sorted({t.probe_note for t in self.targets if t.probe_note})
        lines += [f"Probes: {n}" for n in notes]
        for t in self.critical:
            why = f" ({t.reasons[0]})" if t.reasons else ""
            lines.append(f"WARNING: the pilot estimate of {t.name} is CRITICAL{why}: more oracle labels narrow its "
                         "interval but do not make it reliable; fix what the status names first")
        return "\n".join(lines)

    def figure(self):
        """CI half-width against oracle labels for every target (a matplotlib Figure).

        Returns
        -------
        matplotlib.figure.Figure
            The plan's figure (:func:`cje.viz.plan_plot.plan_figure`).
        """
        # matplotlib is imported only when a figure is drawn
        from cje.viz.plan_plot import plan_figure

        return plan_figure(self)


def _f(value, spec: str) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def pilot_payloads(sources: Any) -> tuple[list[dict], list[str]]:
    """Payloads from estimates.json paths / folders / payload dicts / :class:`cje.api.result.Result`s.

    Parameters
    ----------
    sources : object or list
        One source or a list of them (several = seeds of one setting, pooled).

    Returns
    -------
    payloads : list of dict
        The estimates.json payloads.
    names : list of str
        Where each came from (a path, ``<payload>`` or ``<Result>``).

    Raises
    ------
    InputError
        A pilot file is missing or is not a valid estimates.json.
    OptionError
        No pilot is given, or the pilots differ in estimator, rows, folds or level.
    """

    items = sources if isinstance(sources, (list, tuple)) else [sources]
    payloads, names = [], []
    for item in items:
        if isinstance(item, dict):
            payloads.append(item)
            names.append("<payload>")
        elif hasattr(item, "to_dict") and hasattr(item, "analysis"):
            payloads.append(item.to_dict())
            names.append("<Result>")
        else:
            path = Path(item)
            path = path / "estimates.json" if path.is_dir() else path
            if not path.exists():
                raise InputError("pilot estimates.json not found", path=str(path))
            try:
                payloads.append(read_estimates(path))
            except ValueError as exc:  # JSON decode and schema errors
                raise InputError(f"not a valid estimates.json ({str(exc).splitlines()[0]})", path=str(path)) from None
            names.append(str(path))
    if not payloads:
        raise OptionError("no pilot given", flag="--pilot", key="pilot")
    keys = {(p["metadata"]["estimator"], p["metadata"]["n_samples"], p["metadata"].get("n_folds", 5),
             (p["metadata"].get("inference") or {}).get("level", 0.95)) for p in payloads}
    if len(keys) > 1:
        raise OptionError("pilots differ in estimator, rows, folds or level; pool only seeds of one setting: "
                          f"{sorted(keys)}", flag="--pilot", key="pilot")
    return payloads, names


def _pooled(blocks: list[dict], name: str, df_base: float) -> VarianceParts:
    """Average SE_b^2 and V_o over pilots; the mean pilot half-width for reference."""
    missing = [b for b in blocks if b.get("se_without_oua") is None]
    if missing:
        raise InputError(f"'{name}' has no se_without_oua in the pilot (no estimate, or results written before "
                         "comparisons carried it: rerun the pilot with this version)", field="se_without_oua")
    vb = float(np.mean([b["se_without_oua"] ** 2 for b in blocks]))
    vo = float(np.mean([b.get("oracle_variance") or 0.0 for b in blocks]))
    widths = [(b["ci_upper"] - b["ci_lower"]) / 2 for b in blocks if b.get("ci_lower") is not None]
    return VarianceParts(name, math.sqrt(vb), vo, df_base, float(np.mean(widths)) if widths else None)


def _solve(parts: VarianceParts, ok, m0: float, n: int, n_folds: int, level: float) -> int | None:
    """Smallest integer m in [MIN_ORACLE_LABELS, n] where ``ok(half_width, df)`` holds, by bisection.

    half_width(m) falls with m (SE falls, df rises towards n_c - 1), so ``ok`` flips once.
    The calibration refuses fewer than :data:`cje.stats.calibration.MIN_ORACLE_LABELS` labels.
    """

    def holds(m: int) -> bool:
        hw, df = half_width_curve(parts, [m], m0, n_folds, level)
        return bool(ok(hw[0], df[0]))

    if not holds(n):
        return None
    lo, hi = MIN_ORACLE_LABELS, n
    if holds(lo):
        return lo
    while hi - lo > 1:  # invariant: not holds(lo), holds(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if holds(mid) else (mid, hi)
    return hi


def _probe_count(vo_m: float, sigma: float, e: float, level: float, power: float,
                 n_folds: int = 5) -> int | None:
    """Smallest k with P(audit passes) >= power under transport (module docstring), None if no k does."""

    z = float(special.ndtri(0.5 + power / 2))

    def ok(k: int) -> bool:
        s_k = math.sqrt(vo_m + sigma ** 2 / k)
        df = welch_satterthwaite([(sigma ** 2 / k, k - 1)] + ([(vo_m, n_folds - 1)] if vo_m > 0 else []))
        return e - float(_t(df, 1 - PASS_ALPHA)) * s_k >= z * s_k  # the TOST of cje.checks.audits.decide

    lo, hi = 2, 10 ** 9
    if not ok(hi):
        return None
    if ok(lo):
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _probes(payloads: list[dict], policy: str, parts: VarianceParts, m: int, m0: float, n_folds: int,
            margin: float, level: float, power: float) -> tuple[int | None, str, str]:
    """Probe labels for the transport audit of one target at m oracle labels (module docstring):
    (count or None, where the residual SD came from or why there is no count, the column's mark)."""
    meta = payloads[0]["metadata"]
    if policy not in (meta.get("fresh_draws") or {}):
        return None, "no fresh draws in the pilot for some targets (n/a): their audit uses logged labels", "n/a"
    sds, source = [], ""
    for p in payloads:
        diag = p["metadata"]["diagnostics"].get(policy) or {}
        audit = diag.get("probe_audit") or diag.get("transport") or {}  # the probe audit alone, not the pooled one
        from_probes = audit.get("source", "probes") == "probes"  # not the weighted-label audit of logged rows
        se_labels = audit.get("se_labels", audit.get("se"))  # the probe-noise part only
        if from_probes and se_labels is not None and audit.get("n_probe"):
            sds.append(se_labels * math.sqrt(audit["n_probe"]))
            source = "residual SD from the pilot's probe labels"
    if not sds:
        rmse = [p["metadata"]["calibration"].get("oof_rmse") for p in payloads]
        sds = [r for r in rmse if r is not None]
        source = "residual SD = the calibration's out-of-fold RMSE (no probes in the pilot)"
    if not sds:
        return None, "no residual SD in the pilot (n/a)", "n/a"
    hw, df = half_width_curve(parts, [m], m0, n_folds, level)
    e = min(margin, float(hw[0] / _t(df[0], 0.5 + level / 2)))
    k = _probe_count(parts.oracle_variance * m0 / m, float(np.mean(sds)), e, level, power, n_folds)
    if k is None:
        return None, ("the audit cannot pass at this oracle budget for some targets (never): the calibration "
                      "error sqrt(oracle_variance) is too large against min(margin, SE); more oracle labels "
                      "first"), "never"
    return k, source, ""


def _pilot_status(payloads: list[dict], policies: list[str]) -> tuple[str | None, list[str]]:
    """The worst pilot status over ``policies`` and the pooled pilots, with that status's reasons."""
    rank = {"GOOD": 0, "WARNING": 1, "CRITICAL": 2}
    worst, reasons = None, []
    for p in payloads:
        for policy in policies:
            block = (p["metadata"].get("policies") or {}).get(policy) or {}
            status = block.get("status")
            if status in rank and (worst is None or rank[status] > rank[worst]):
                worst, reasons = status, [str(r) for r in block.get("reasons") or []]
    return worst, reasons


def plan_labels(pilot: Any, half_width: float | None = None, compare: list[tuple[str, str]] | None = None,
                margin: float | None = None, power: float = 0.8, policies: list[str] | None = None,
                transport_margin: float = 0.05, probe_power: float | None = None) -> Plan:
    """Plan oracle (and probe) labels from a pilot (module docstring for the model).

    Parameters
    ----------
    pilot : str, Path, dict, Result or a list of them
        estimates.json path(s), folder(s), payload dict(s) or Result(s) of one setting
        (several = seeds, pooled).
    half_width : float or None, default=None
        Target CI half-width per policy (at the pilot's level); or
    compare : list of (str, str) or None, default=None
        Pairs (a, b) to separate by ``margin`` with ``power`` ('base' allowed).
    margin : float or None, default=None
        The difference to detect (with ``compare``).
    power : float, default=0.8
        Power of the separation, in (0, 1).
    policies : list of str or None, default=None
        Restrict the half-width plan to these targets (default: every target with
        an estimate in the pilot).
    transport_margin : float, default=0.05
        The audit margin (``--transport-margin`` of the analysis).
    probe_power : float or None, default=None
        Probability the audit passes when the transport holds (default ``power``).

    Returns
    -------
    Plan
        One target per policy or pair, with the labels it needs.

    Raises
    ------
    OptionError
        A bad target: neither or both of ``half_width`` and ``compare``, a power outside (0, 1),
        a half-width or margin not > 0, an unknown policy.
    InputError
        A pilot missing what the model needs (e.g. ``se_without_oua``).
    ConfigError
        A pair to separate was not compared in the pilot (key ``compare``; the message says
        why: an unknown name, or a pilot run with the default ``comparisons='base'``).

    References
    ----------
    Chow, S.-C., Shao, J., & Wang, H. (2008). Sample Size Calculations in Clinical Research
    (2nd ed.). Chapman & Hall/CRC, ch. 3.
    """
    if (half_width is None) == (compare is None):
        raise OptionError("give either a target half-width or pairs to separate (with a margin)", flag="--half-width", key="target")
    if not (0 < power < 1):
        raise OptionError(f"power must be in (0, 1), got {power}", flag="--power", key="power")
    payloads, names = pilot_payloads(pilot)
    meta = payloads[0]["metadata"]
    n, level = int(meta["n_samples"]), float((meta.get("inference") or {}).get("level", 0.95))
    n_folds, m0 = int(meta.get("n_folds", 5)), float(np.mean([p["metadata"]["n_oracle"] for p in payloads]))
    plan = Plan(estimator=meta["estimator"], n_samples=n, pilot_labels=m0, n_folds=n_folds, level=level,
                n_pilots=len(payloads), power=power, sources=names)
    q = 0.5 + level / 2
    if half_width is not None:
        if not half_width > 0:
            raise OptionError(f"target half-width must be > 0, got {half_width}", flag="--half-width", key="half_width")
        names_ = policies or [p for p in meta["target_policies"]
                              if all(x["metadata"]["policies"][p]["estimate"] is not None for x in payloads)]
        for policy in names_:
            if policy not in meta["policies"]:
                raise OptionError(f"unknown policy '{policy}' (pilot has {', '.join(meta['target_policies'])})",
                                  flag="--policy", key="policy")
            blocks = [p["metadata"]["policies"][policy] for p in payloads]
            parts = _pooled(blocks, policy, max(blocks[0]["n_used"] - 1, 1))
            m = _solve(parts, lambda hw, df: hw <= half_width, m0, n, n_folds, level)
            at_plan = float(half_width_curve(parts, [n if m is None else m], m0, n_folds, level)[0][0])
            floor = float(_t(parts.df_base, q) * parts.se_base)
            target = Target(policy, "half_width", parts, half_width, m, at_plan, floor)
            target.probe_labels, target.probe_note, target.probe_mark = _probes(
                payloads, policy, parts, n if m is None else m, m0, n_folds, transport_margin, level,
                power if probe_power is None else probe_power)
            target.status, target.reasons = _pilot_status(payloads, [policy])
            plan.targets.append(target)
    else:
        if margin is None or not margin > 0:
            raise OptionError("separating policies needs a margin > 0", flag="--margin", key="margin")

        for a, b in compare:
            blocks = []
            for p in payloads:
                try:
                    c = find_comparison(p, a, b)
                except KeyError as exc:  # a pair the pilot did not compute: one line, exit 2
                    raise OptionError(f"cannot plan {a} - {b}: {exc.args[0]}", flag="--compare", key="compare") from None
                blocks.append({"se_without_oua": c.se_without_oua, "oracle_variance": c.oracle_variance,
                               "ci_lower": c.ci_lower, "ci_upper": c.ci_upper})
            parts = _pooled(blocks, f"{a} - {b}", max(n - 1, 1))
            m = _solve(parts, lambda hw, df: margin >= (1 + _t(df, power) / _t(df, q)) * hw, m0, n, n_folds, level)
            at_plan = float(half_width_curve(parts, [n if m is None else m], m0, n_folds, level)[0][0])
            floor = float(_t(parts.df_base, q) * parts.se_base)
            target = Target(f"{a} - {b}", "separation", parts, margin, m, at_plan, floor)
            members = [x for x in (a, b) if x != BASE]  # the base policy needs no probes
            probes = []
            for policy in members:
                blocks = [p["metadata"]["policies"][policy] for p in payloads]
                own = _pooled(blocks, policy, max(blocks[0]["n_used"] - 1, 1))
                probes.append(_probes(payloads, policy, own, n if m is None else m, m0, n_folds, transport_margin,
                                      level, power if probe_power is None else probe_power))
            counts = [k for k, _, _ in probes]
            if probes and None not in counts:
                target.probe_labels, target.probe_note = int(sum(counts)), probes[0][1]
            elif probes:
                _, target.probe_note, target.probe_mark = next(x for x in probes if x[0] is None)
            target.status, target.reasons = _pilot_status(payloads, members)
            plan.targets.append(target)
    return plan
