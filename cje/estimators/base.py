"""The estimator protocol, its result type and the name registry.

An estimator turns the shared :class:`~cje.estimators.context.AnalysisContext` into a
:class:`PolicyEstimate` for one target policy: the point estimate, its
per-prompt influence values (for cluster-robust SEs and paired comparisons),
and the estimates recomputed with each fold's calibrator (for the OUA
jackknife). Inference and diagnostics are applied uniformly afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from cje.errors import OptionError
from cje.estimators.context import AnalysisContext

__all__ = ["PolicyEstimate", "Estimator", "register", "get_estimator", "ESTIMATORS", "estimator_names"]


@dataclass
class PolicyEstimate:
    """What an estimator returns for one policy.

    Parameters
    ----------
    estimate : float
        The point estimate psi.
    influence : ndarray
        Per-cluster (prompt) influence values phi_c, psi_hat - psi ~ mean(phi).
    cluster_ids : ndarray
        Prompt ids aligned with ``influence``.
    jackknife : ndarray or None
        psi^(-k) for k = 1..K (None when OUA does not apply).
    n_used : int
        Rows (prompts) the estimate averages over.
    weights : ndarray or None, default=None
        The importance weights used (over the used rows), if any.
    details : dict
        Estimator-specific numbers recorded in the output.
    rests_on : list of str
        Ids of the assumptions the estimate rests on (keys of :data:`cje.checks.status.ASSUMPTIONS`);
        the analysis checks each and records it in ``metadata.policies[p].assumptions``.
    notes : dict
        {assumption id: extra text} specific to this estimate (e.g. why a DR correction is zero).
    dropped : dict
        Extra {reason: count} drops made by the estimator (e.g. missing fresh draws).
    weight_rows : ndarray or None, default=None
        Logged row indices ``weights`` refer to, when not ``ctx.rows(policy)``
        (e.g. DR rows dropped for missing fresh draws).
    df_parts : list of (ndarray, float)
        [(part of ``influence``, its df)] for pieces that average over few units (label
        term, probe correction); they set the interval's Welch-Satterthwaite df
        (:func:`cje.stats.inference.interval`).
    """

    estimate: float
    influence: np.ndarray
    cluster_ids: np.ndarray
    jackknife: np.ndarray | None
    n_used: int
    weights: np.ndarray | None = None
    details: dict = field(default_factory=dict)
    rests_on: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)
    weight_rows: np.ndarray | None = None
    df_parts: list = field(default_factory=list)


class Estimator:
    """Base class of the estimators: subclasses set the class attributes and implement :meth:`estimate`.

    Attributes
    ----------
    name : str
        The registry name (``get_estimator(name)``).
    weight_role : {'primary', 'correction', 'none'}
        'primary' (the estimate is a weighted mean), 'correction' (weights
        enter a correction term) or 'none' (a recorded label; the status follows the
        assumptions the estimate actually rests on, ``PolicyEstimate.rests_on``).
    needs_fresh_draws : bool
        The estimator cannot run without fresh draws.
    uses_calibration : bool
        The estimate transports the base-policy calibration to the target.
    """

    name: ClassVar[str] = ""
    weight_role: ClassVar[str] = "none"
    needs_fresh_draws: ClassVar[bool] = False
    uses_calibration: ClassVar[bool] = True

    def estimate(self, ctx: AnalysisContext, policy: str) -> PolicyEstimate:  # pragma: no cover
        """Estimate the value of one target policy from the shared analysis context.

        Parameters
        ----------
        ctx : AnalysisContext
            The shared folds, calibration, rewards and weights of the analysis.
        policy : str
            The target policy.

        Returns
        -------
        PolicyEstimate
            The point estimate, its per-prompt influence values and its OUA jackknife.
        """
        raise NotImplementedError


ESTIMATORS: dict[str, type[Estimator]] = {}


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator adding an estimator to the registry under ``cls.name``.

    Parameters
    ----------
    cls : type of Estimator
        The estimator class; ``cls.name`` is its registry key.

    Returns
    -------
    type of Estimator
        ``cls`` itself, unchanged.
    """
    ESTIMATORS[cls.name] = cls
    return cls


def estimator_names() -> list[str]:
    """Names of the registered estimators, sorted.

    Returns
    -------
    list of str
        The keys of :data:`ESTIMATORS` in alphabetical order.
    """
    return sorted(ESTIMATORS)


def get_estimator(name: str) -> Estimator:
    """Instantiate a registered estimator by name; unknown names list the valid ones.

    Parameters
    ----------
    name : str
        A registry name, e.g. ``"calibrated-ips"``.

    Returns
    -------
    Estimator
        A new instance of the registered class, with default arguments.

    Raises
    ------
    OptionError
        ``name`` is not registered; the message suggests the closest name and lists the valid ones
        (``--estimator``).
    """
    if name not in ESTIMATORS:
        import difflib

        close = difflib.get_close_matches(str(name).lower(), estimator_names(), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise OptionError(f"unknown estimator '{name}'; {hint}choose one of: {', '.join(estimator_names())}",
                          flag="--estimator", key="estimator")
    return ESTIMATORS[name]()
