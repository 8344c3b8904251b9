"""Estimators behind a name registry: ``get_estimator("calibrated-ips")``.

Importing this package registers every estimator module listed in ``_MODULES``.
"""

import importlib

from cje.estimators.base import ESTIMATORS, Estimator, PolicyEstimate, estimator_names, get_estimator, register

_MODULES = ("direct", "ips", "dr", "tmle", "stacked")
for _name in _MODULES:
    try:
        importlib.import_module(f"cje.estimators.{_name}")
    except ModuleNotFoundError as _exc:  # a listed module may be absent; an import error inside one is raised
        if _exc.name != f"cje.estimators.{_name}":
            raise

__all__ = ["ESTIMATORS", "Estimator", "PolicyEstimate", "estimator_names", "get_estimator", "register"]
