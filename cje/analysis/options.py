"""Checks of every analysis option, before any data is read and again against the data.

Called by :func:`cje.analysis.run.validate_config`, which ``cje analyze``, :func:`cje.analyze`
and the workflow all go through. A bad value is a one-line :class:`OptionError`
naming the command-line flag and the option key, exit code 2; nothing is computed
and nothing is written. Silent wrong numbers motivated each rule:
``--level nan`` or ``--clip nan`` used to give exit 0 with every CI or estimate
null, ``--n-folds 5000`` on 1,000 rows gave CIs ~30% too narrow and still GOOD.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from cje.errors import OptionError
from cje.results.decision import COMPARISON_MODES, MAX_ALL_PAIRS
from cje.stats.calibration import MIN_ORACLE_LABELS
from cje.stats.oracle_mask import mask_oracle_labels

__all__ = ["FLAGS", "check_options", "check_against_data", "plain_number", "MAX_SEED"]

# option key -> the ``cje analyze`` flag
FLAGS = {"oracle_coverage": "--oracle-coverage", "probe_coverage": "--probe-coverage", "n_folds": "--n-folds",
         "seed": "--seed", "clip": "--clip", "rho": "--rho", "transport_margin": "--transport-margin",
         "level": "--level", "calibration_mode": "--calibration", "comparisons": "--comparisons"}
CALIBRATION_MODES = ("monotone", "two_stage", "auto")
MAX_SEED = 2**63 - 1
# a confidence level this close to 1 has an infinite or meaningless t quantile
MAX_LEVEL = 1 - 1e-9


def plain_number(value: object) -> str:
    """A number as users write it (``1.5``, ``nan``, ``5000``), never ``np.float64(1.5)``.

    Parameters
    ----------
    value : object
        A number (anything else is shown with ``repr``).

    Returns
    -------
    str
        The number as text.
    """
    if isinstance(value, bool) or not isinstance(value, (Real, np.number)):
        return repr(value)
    if isinstance(value, (Integral, np.integer)):
        return str(int(value))
    return format(float(value), "g") if math.isfinite(float(value)) else str(float(value))


def _fail(key: str, message: str) -> None:
    raise OptionError(message, flag=FLAGS[key], key=key)


def _real(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (Real, np.number)) or isinstance(value, complex):
        _fail(key, f"must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        _fail(key, f"must be a finite number, got {plain_number(number)}")
    return number


def _integer(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)):
        _fail(key, f"must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def check_options(options) -> None:
    """Range and type of every option of :class:`cje.estimators.context.AnalysisOptions` (no data needed).

    oracle_coverage in (0, 1]; probe_coverage in [0, 1); n_folds an integer >= 2;
    seed an integer in [0, 2^63 - 1]; clip > 1; rho > 0; transport_margin in (0, 1);
    level in (0, 1 - 1e-9]; every float finite (nan and inf rejected); calibration
    one of monotone, two_stage, auto; comparisons 'base', 'all' or a list of name pairs.

    Parameters
    ----------
    options : AnalysisOptions
        The options to check.

    Raises
    ------
    OptionError
        The first bad value, naming the command-line flag and the option key.
    """
    c = _real("oracle_coverage", options.oracle_coverage)
    if not 0 < c <= 1:
        _fail("oracle_coverage", f"must be in (0, 1], got {plain_number(c)}")
    p = _real("probe_coverage", options.probe_coverage)
    if not 0 <= p < 1:
        _fail("probe_coverage", f"must be in [0, 1), got {plain_number(p)}")
    k = _integer("n_folds", options.n_folds)
    if k < 2:
        _fail("n_folds", f"must be at least 2, got {k}")
    s = _integer("seed", options.seed)
    if not 0 <= s <= MAX_SEED:
        _fail("seed", f"must be in [0, 2^63 - 1], got {s}")
    clip = _real("clip", options.clip)
    if clip <= 1:
        _fail("clip", f"must be > 1 (the largest weight kept, in units of the mean weight), got {plain_number(clip)}")
    rho = _real("rho", options.rho)
    if rho <= 0:
        _fail("rho", f"must be > 0, got {plain_number(rho)}")
    margin = _real("transport_margin", options.transport_margin)
    if not 0 < margin < 1:
        _fail("transport_margin", f"must be in (0, 1) (a difference on the oracle scale), got {plain_number(margin)}")
    level = _real("level", options.level)
    if not 0 < level <= MAX_LEVEL:
        _fail("level", f"must be in (0, 1), e.g. 0.95, got {plain_number(level)}")
    if options.calibration_mode not in CALIBRATION_MODES:
        _fail("calibration_mode", f"must be one of {', '.join(CALIBRATION_MODES)}, "
                                  f"got {options.calibration_mode!r}")
    pairs = options.comparisons
    if isinstance(pairs, str):
        if pairs not in COMPARISON_MODES:
            _fail("comparisons", f"must be one of {', '.join(COMPARISON_MODES)}, got {pairs!r}")
    elif not (isinstance(pairs, (tuple, list)) and all(
            isinstance(c, (tuple, list)) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in pairs)):
        _fail("comparisons", f"must be 'base', 'all' or a list of (policy, policy) pairs, got {pairs!r}")


def check_against_data(options, data) -> None:
    """Options that depend on the data, checked before the context or any estimator is built.

    comparisons: ``'all'`` with the base and k targets is k(k + 1) / 2 pairs, refused above
    :data:`cje.results.decision.MAX_ALL_PAIRS` (``'base'`` computes at most 2k); named
    pairs must name the base or a target of the data.

    n_folds: each fold must hold at least 2 of the oracle labels calibration gets
    (round(oracle_coverage * n) of the labelled, judged rows, as :func:`cje.stats.oracle_mask.mask_oracle_labels`
    selects them), i.e. ``n_folds <= labels / 2``. With fewer labels than
    :data:`cje.stats.calibration.MIN_ORACLE_LABELS` calibration itself reports the shortage.

    Parameters
    ----------
    options : AnalysisOptions
        The options.
    data : LoggedData
        The logged data.

    Raises
    ------
    OptionError
        Too many folds for the labels (``--n-folds``); too many pairs (``--comparisons all``).
    """
    k = len(data.target_policies)
    if not isinstance(options.comparisons, str):
        known = ["base", *data.target_policies]
        for pair in options.comparisons:
            for name in pair:
                if name not in known:
                    _fail("comparisons", f"unknown policy {name!r} in the pair {pair[0]!r} - {pair[1]!r}; "
                                         f"the data have {', '.join(known)}")
    if options.comparisons == "all" and k * (k + 1) // 2 > MAX_ALL_PAIRS:
        most = (math.isqrt(8 * MAX_ALL_PAIRS + 1) - 1) // 2  # the most targets 'all' takes
        _fail("comparisons", f"'all' with {k:,} target policies is {k * (k + 1) // 2:,} pairs, more than the "
                             f"limit of {MAX_ALL_PAIRS:,} ({most} targets); use --comparisons base (the default: "
                             "each target against the base and the best against each other candidate)")

    mask = mask_oracle_labels(data.oracle_labels, options.oracle_coverage, options.seed)
    labels = int((mask.used & np.isfinite(data.judge_scores)).sum())
    if labels >= MIN_ORACLE_LABELS and options.n_folds > labels // 2:
        _fail("n_folds", f"{options.n_folds} folds need at least {2 * options.n_folds} oracle labels (2 per "
                         f"fold); calibration gets {labels} (oracle coverage {plain_number(options.oracle_coverage)} "
                         f"of {data.n} rows), so use at most {labels // 2}")
