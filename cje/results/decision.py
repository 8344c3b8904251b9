"""What an analysis says about the decision: each target against the base, and the best policy.

Pure functions on an estimates.json payload (``AnalysisOutput.to_dict()``). They
never recompute a variance: every difference, CI and p-value is the paired
comparison the analysis already wrote to ``metadata.comparisons``
(:func:`cje.stats.inference.paired_comparison`: difference of aligned influence
functions plus the oracle-uncertainty jackknife of the difference, Student t).
The terminal output, the API (:class:`cje.api.result.Result`), the CSV and the
HTML pages all read the decision from here.

Which pairs exist
-----------------
By default (``comparisons='base'``, :data:`COMPARISON_MODES`) an analysis compares each
target with the base and, for the decision, the best candidate with every other
candidate (:func:`decision_pairs`): at most 2k pairs for k targets, instead of the
k(k+1)/2 of every pair (``comparisons='all'``, at most :data:`MAX_ALL_PAIRS`).
``metadata.comparisons_mode`` says which; asking for a pair that was not computed
raises a ``KeyError`` saying so and how to get it.

Best policy
-----------
Candidates are the base policy (its on-policy estimate) and every target whose
estimate exists and is reliable (not CRITICAL, not withheld by
``--refuse-unreliable``). The best is the candidate with the highest estimate.
It is *resolved* when its paired CI against every other candidate lies above 0
at the analysis's confidence level (and the p-value agrees: an A/A comparison, zero
difference with zero SE, has p = 1 and never resolves anything): an intersection-union test (each of the
k - 1 comparisons must reject on its own), so no multiplicity correction is
needed for the claim "better than each of the others" (Berger, 1982,
Technometrics 24:295). Otherwise the candidate it is least separated from
(largest p-value) is named.

References
----------
Berger, R. L. (1982). Multiparameter hypothesis testing and acceptance sampling.
Technometrics, 24(4), 295-300.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cje.names import BASE_POLICY_NAME

__all__ = ["BASE", "COMPARISON_MODES", "MAX_ALL_PAIRS", "Comparison", "BestPolicy", "level_label",
           "find_comparison", "comparisons_vs_base", "withheld_policies", "best_policy", "decision_pairs",
           "assumption_items"]

BASE = BASE_POLICY_NAME  # the name of the base (logging) policy in metadata.comparisons
# metadata.comparisons_mode: 'base' = each target vs the base + the pairs the decision needs;
# 'all' = every pair of the base and the targets with an estimate
COMPARISON_MODES = ("base", "all")
# 'all' is refused above this many pairs (199 targets and the base: 19,900 pairs, about 8 MB of
# estimates.json); 1,000 targets would be 500,500 pairs, a 200 MB file and minutes of work
MAX_ALL_PAIRS = 20_000


def level_label(level: float | None) -> str:
    """``0.95 -> '95%'``, ``0.9 -> '90%'``, ``0.975 -> '97.5%'`` (never rounded to a wrong level).

    Parameters
    ----------
    level : float or None
        A confidence level in (0, 1); None means 0.95.

    Returns
    -------
    str
        The level as a percentage, e.g. ``'95%'``.
    """
    return f"{100 * (0.95 if level is None else level):g}%"


@dataclass(frozen=True)
class Comparison:
    """psi_a - psi_b with its paired SE, CI (at ``level``), Student-t df and two-sided p-value.

    Parameters
    ----------
    policy_a, policy_b : str
        The two policies ('base' for the logging policy).
    difference : float or None
        psi_a - psi_b.
    se : float or None
        Its paired standard error (with OUA).
    ci_lower, ci_upper : float or None
        Its interval at ``level``.
    p_value : float or None
        Two-sided p-value of difference = 0.
    df : float or None
        Student-t degrees of freedom.
    level : float
        The confidence level.
    se_without_oua : float or None, default=None
        The paired standard error without the oracle-uncertainty part.
    oracle_variance : float or None, default=None
        The OUA jackknife variance of the difference.
    """

    policy_a: str
    policy_b: str
    difference: float | None
    se: float | None
    ci_lower: float | None
    ci_upper: float | None
    p_value: float | None
    df: float | None
    level: float
    se_without_oua: float | None = None
    oracle_variance: float | None = None

    @property
    def separated(self) -> bool:
        """True when the CI excludes 0 (the two values differ at this level) and, when a p-value
        is known, it agrees (p < 1 - level): an A/A comparison (zero difference, zero SE, p = 1) is
        never separated, whatever rounding leaves in its CI."""
        if self.p_value is not None and math.isfinite(self.p_value) and self.p_value >= 1 - self.level:
            return False
        return (self.ci_lower is not None and self.ci_upper is not None
                and (self.ci_lower > 0 or self.ci_upper < 0))

    @property
    def above_zero(self) -> bool:
        """True when a is better than b at this level: the CI lies above 0 and, when a p-value is
        known, p < 1 - level (so an A/A comparison is never a win)."""
        return self.separated and self.ci_lower is not None and self.ci_lower > 0

    def describe(self) -> str:
        """One line for people, e.g. ``clone - base = +0.012 [-0.003, +0.027] (95% CI), p = 0.12``.

        Returns
        -------
        str
            The comparison as one line.
        """
        ci = ("" if self.ci_lower is None else
              f" [{self.ci_lower:+.3f}, {self.ci_upper:+.3f}] ({level_label(self.level)} CI)")
        p = "" if self.p_value is None else f", p = {format_p(self.p_value)}"
        diff = "n/a" if self.difference is None else f"{self.difference:+.3f}"
        return f"{self.policy_a} - {self.policy_b} = {diff}{ci}{p}"


def format_p(p: float | None) -> str:
    """A p-value for people: 3 significant digits, '< 0.001' below that.

    Parameters
    ----------
    p : float or None
        A p-value.

    Returns
    -------
    str
        'n/a' for None or a non-finite value.
    """
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def _level(payload: dict) -> float:
    return float((payload["metadata"].get("inference") or {}).get("level", 0.95))


def find_comparison(payload: dict, policy_a: str, policy_b: str) -> Comparison:
    """The paired comparison psi_a - psi_b from ``metadata.comparisons`` (either stored order).

    Parameters
    ----------
    payload : dict
        An estimates.json payload.
    policy_a, policy_b : str
        The two policies ('base' for the logging policy).

    Returns
    -------
    Comparison
        Oriented as psi_a - psi_b (a pair stored in the other order is flipped).

    Raises
    ------
    KeyError
        The pair is not in the result; the message says why: an unknown name (naming the
        policies), a policy without an estimate, or a pair the analysis did not compute
        (``comparisons='base'``: how to get every pair).
    """
    return _lookup(payload, _comparison_index(payload), policy_a, policy_b)


def _comparison_index(payload: dict) -> dict[tuple[str, str], dict]:
    """{(policy_a, policy_b): stored comparison} of ``metadata.comparisons`` (one pass)."""
    return {(c["policy_a"], c["policy_b"]): c for c in payload["metadata"].get("comparisons") or []}


def _lookup(payload: dict, index: dict[tuple[str, str], dict], policy_a: str, policy_b: str) -> Comparison:
    c, flip = index.get((policy_a, policy_b)), False
    if c is None:
        c, flip = index.get((policy_b, policy_a)), True
    if c is None:
        raise KeyError(_missing_pair(payload, policy_a, policy_b))
    lo, hi = c.get("ci_lower"), c.get("ci_upper")
    diff = c.get("difference")
    if flip:
        diff = None if diff is None else -diff
        lo, hi = (None if hi is None else -hi), (None if lo is None else -lo)
    return Comparison(policy_a, policy_b, diff, c.get("se"), lo, hi, c.get("p_value"), c.get("df"),
                      _level(payload), c.get("se_without_oua"), c.get("oracle_variance"))


def _missing_pair(payload: dict, policy_a: str, policy_b: str) -> str:
    """Why the pair (a, b) is not in ``metadata.comparisons``, in one line."""
    meta = payload["metadata"]
    head = f"no paired comparison of '{policy_a}' and '{policy_b}' in this result"
    known = [BASE] + list(meta.get("target_policies") or [])
    for name in (policy_a, policy_b):
        if name not in known:
            return f"{head}: unknown policy '{name}' (this result has {', '.join(known)})"
    for name in (policy_a, policy_b):
        block = meta["policies"].get(name) if name != BASE else meta.get("base_policy")
        if not block or block.get("estimate") is None:
            return f"{head}: '{name}' has no estimate (withheld or failed), so it is not compared"
    if policy_a == policy_b:
        return f"{head}: a policy minus itself is 0 by definition"
    if meta.get("comparisons_mode", "all") == "base":
        return (f"{head}: it was not computed (comparisons 'base', the default, computes each target against "
                "the base and the best against each other candidate); rerun with --comparisons all "
                "(cje.analyze(..., comparisons='all'), workflow config analysis.comparisons: all) for every pair")
    return head


def withheld_policies(payload: dict) -> list[str]:
    """Targets whose estimate is null in the output (withheld by ``--refuse-unreliable`` or failed).

    Parameters
    ----------
    payload : dict
        An estimates.json payload.

    Returns
    -------
    list of str
        In output order.
    """
    meta = payload["metadata"]
    return [p for p in meta["target_policies"] if meta["policies"][p]["estimate"] is None]


def comparisons_vs_base(payload: dict) -> dict[str, Comparison]:
    """Each target with an estimate in the output against the base: {policy: Comparison}.

    Parameters
    ----------
    payload : dict
        An estimates.json payload.

    Returns
    -------
    dict of str to Comparison
        Empty when the payload has no base policy; targets without a stored comparison are left out.
    """
    out = {}
    if not payload["metadata"].get("base_policy"):
        return out
    withheld = set(withheld_policies(payload))
    index = _comparison_index(payload)
    for policy in payload["metadata"]["target_policies"]:
        if policy in withheld or ((policy, BASE) not in index and (BASE, policy) not in index):
            continue
        out[policy] = _lookup(payload, index, policy, BASE)
    return out


@dataclass(frozen=True)
class BestPolicy:
    """The best candidate and whether the data resolve it.

    Parameters
    ----------
    policy : str or None
        Name of the best candidate ('base' for the logging policy), or None when
        no candidate exists.
    estimate : float or None
        Its estimate.
    resolved : bool
        Its paired CI against every other candidate lies above 0.
    level : float
        The confidence level.
    closest : Comparison or None, default=None
        The candidate it is least separated from (largest p-value), with that comparison
        (best - closest).
    candidates : list of str
        Every candidate in decreasing estimate order.
    excluded : dict of str to str
        {policy: why} for targets left out (unreliable, withheld).
    """

    policy: str | None
    estimate: float | None
    resolved: bool
    level: float
    closest: Comparison | None = None
    candidates: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One sentence for people.

        Returns
        -------
        str
            The decision as one sentence.
        """
        lv = level_label(self.level)
        if self.policy is None:
            return "No policy can be recommended: no reliable estimate (" + "; ".join(
                f"{p}: {why}" for p, why in self.excluded.items()) + ")."
        head = f"Best: {self.policy} ({self.estimate:.3f})"
        if len(self.candidates) == 1:
            return head + " - the only reliable candidate, so nothing to compare it with."
        if self.resolved:
            return (f"{head}, resolved: better than each other candidate at {lv} "
                    f"(closest: {self.closest.describe()}).")
        return (f"{head}, NOT resolved at {lv}: it cannot be told apart from {self.closest.policy_b} "
                f"({self.closest.describe()}).")


def best_policy(payload: dict, include_base: bool = True) -> BestPolicy:
    """The best reliable candidate (module docstring); higher values are better.

    Parameters
    ----------
    payload : dict
        An estimates.json payload.
    include_base : bool, default=True
        Count the base policy's on-policy estimate as a candidate.

    Returns
    -------
    BestPolicy
        The best candidate, whether it is resolved, and the candidate closest to it.
    """
    level = _level(payload)
    values, excluded = _candidates(payload, include_base)
    ranked = sorted(values, key=lambda p: -values[p])
    if not ranked:
        return BestPolicy(None, None, False, level, excluded=excluded)
    best = ranked[0]
    index = _comparison_index(payload)
    comps = []
    for other in ranked[1:]:
        try:
            comps.append(_lookup(payload, index, best, other))
        except KeyError:
            comps.append(Comparison(best, other, values[best] - values[other], None, None, None, None, None, level))
    if not comps:
        return BestPolicy(best, values[best], False, level, None, ranked, excluded)
    resolved = all(c.above_zero for c in comps)
    closest = max(comps, key=lambda c: (1.0 if c.p_value is None else c.p_value))
    return BestPolicy(best, values[best], resolved, level, closest, ranked, excluded)


def _candidates(payload: dict, include_base: bool) -> tuple[dict[str, float], dict[str, str]]:
    """({candidate: estimate} with the base first, then targets in output order; {excluded: why})."""
    meta = payload["metadata"]
    excluded: dict[str, str] = {}
    values: dict[str, float] = {}
    base = meta.get("base_policy")
    if include_base and base and base.get("estimate") is not None:
        values[BASE] = float(base["estimate"])
    for p in meta["target_policies"]:
        r = meta["policies"][p]
        if r["estimate"] is None:
            excluded[p] = "estimate withheld" if r["status"] == "CRITICAL" else "no estimate"
        elif not r["reliable"]:
            excluded[p] = f"{r['status']}, unreliable"
        else:
            values[p] = float(r["estimate"])
    return values, excluded


def decision_pairs(payload: dict) -> list[tuple[str, str]]:
    """The pairs :func:`best_policy` reads: the best candidate against every other, with and without the base.

    With the base as a candidate the best is compared with every other candidate; without
    it (``include_base=False``) the best target is compared with every other reliable
    target. The analysis computes these pairs whatever its ``comparisons`` mode, so the
    decision never lacks a comparison.

    Parameters
    ----------
    payload : dict
        An estimates.json payload, or its ``metadata`` with at least ``target_policies``,
        ``policies`` (estimate, status, reliable) and ``base_policy``.

    Returns
    -------
    list of (str, str)
        (best, other) pairs, each unordered pair once.
    """
    seen: set[frozenset] = set()
    out = []
    for include_base in (True, False):
        values, _ = _candidates(payload, include_base)
        ranked = sorted(values, key=lambda p: -values[p])
        for other in ranked[1:]:
            key = frozenset((ranked[0], other))
            if key not in seen:
                seen.add(key)
                out.append((ranked[0], other))
    return out


def assumption_items(block: dict) -> list[dict]:
    """A policy's assumptions as dicts {id, statement, status, evidence}, from either output form.

    The older form is a list of strings (statement only, status unknown); the newer
    one a list of objects. Unknown keys are kept.

    Parameters
    ----------
    block : dict
        A ``metadata.policies[name]`` block.

    Returns
    -------
    list of dict
        Ids default to ``a1``, ``a2``, ...
    """
    items = []
    for i, a in enumerate(block.get("assumptions") or []):
        if isinstance(a, str):
            items.append({"id": f"a{i + 1}", "statement": a, "status": None, "evidence": None})
        elif isinstance(a, dict):
            items.append({"id": f"a{i + 1}", "statement": "", "status": None, "evidence": None, **a})
    return items
