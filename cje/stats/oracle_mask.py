"""Oracle-coverage masking for coverage experiments (statistics.md section 3).

``--oracle-coverage c`` keeps a seeded uniform subset of round(c * n) of the
available labels, n = number of logged rows ("10% coverage" = labels on 10% of
samples). Asking for more labels than exist keeps them all, with a warning; the
masked labels stay aside as ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OracleMask", "mask_oracle_labels", "select_probe_labels"]


@dataclass(frozen=True)
class OracleMask:
    """Which oracle labels the analysis may use.

    Parameters
    ----------
    used : ndarray of bool
        Mask over rows: labels available to calibration.
    held_out : ndarray of bool
        Mask over rows: labels hidden by the mask (ground truth).
    requested_coverage : float
        c asked for.
    used_coverage : float
        n_used / n obtained.
    warning : str or None, default=None
        Set when more labels were asked for than the file has.
    """

    used: np.ndarray
    held_out: np.ndarray
    requested_coverage: float
    used_coverage: float
    warning: str | None = None


def mask_oracle_labels(oracle_labels: np.ndarray, coverage: float, seed: int) -> OracleMask:
    """Keep round(coverage * n) labels chosen uniformly at random (numpy Generator(seed)).

    Parameters
    ----------
    oracle_labels : ndarray
        Oracle labels (NaN = absent).
    coverage : float
        In (0, 1].
    seed : int
        Seed of the selection.

    Returns
    -------
    OracleMask
        With a warning (and every label used) when round(coverage * n) exceeds the labels available.
    """
    n = oracle_labels.size
    available = np.flatnonzero(np.isfinite(oracle_labels))
    wanted = int(round(coverage * n))
    warning = None
    used = np.zeros(n, bool)
    if wanted >= available.size:
        used[available] = True
        if wanted > available.size:
            warning = (f"oracle coverage {coverage} asks for {wanted} labels but the file has "
                       f"{available.size}; using all of them (coverage {available.size / n:.3f})")
    else:
        rng = np.random.default_rng(seed)
        used[rng.choice(available, size=wanted, replace=False)] = True
    held_out = np.isfinite(oracle_labels) & ~used
    return OracleMask(used=used, held_out=held_out, requested_coverage=float(coverage),
                      used_coverage=float(used.sum() / n) if n else 0.0, warning=warning)


def select_probe_labels(oracle_labels: np.ndarray, probe_coverage: float, seed: int) -> np.ndarray:
    """Seeded fraction ``probe_coverage`` of a target's labelled fresh draws used as probes.

    round(P * n_labelled) probes; the other labels stay ground truth.

    Parameters
    ----------
    oracle_labels : ndarray
        Oracle labels of the target's fresh draws (NaN = absent).
    probe_coverage : float
        The fraction P.
    seed : int
        Seed of the selection.

    Returns
    -------
    ndarray of bool
        The probe mask.
    """
    available = np.flatnonzero(np.isfinite(oracle_labels))
    probes = np.zeros(oracle_labels.size, bool)
    k = int(round(probe_coverage * available.size))
    if k > 0:
        rng = np.random.default_rng(seed + 7919)
        probes[rng.choice(available, size=min(k, available.size), replace=False)] = True
    return probes
