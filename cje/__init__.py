"""Causal Judge Evaluation (CJE): calibrated LLM-judge estimates of policy value.

Public API (docs/api.md)::

    import cje
    result = cje.analyze("logged_data.jsonl", fresh_draws="fresh_draws/", estimator="direct",
                         oracle_coverage=0.25, seed=0)
    result.estimates            # polars DataFrame, one row per policy (the estimates.csv columns)
    result.compare("clone")     # paired difference against the base, CI, p-value
    result.best_policy()        # the best reliable policy and whether the data resolve it
    result.plot_estimates()     # matplotlib Figure
    result.write("out/")        # the files `cje analyze` writes
    cje.plan_labels("out/estimates.json", half_width=0.02).table()   # oracle labels needed

The names below are imported on first use (PEP 562), so ``import cje`` stays
instant and ``cje <command>`` pays only for what it runs. The package is
organised one concept per module (docs/architecture.md).
"""

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "analyze": "cje.api",
    "Result": "cje.api.result",
    "load_result": "cje.api.result",
    "plan_labels": "cje.analysis.plan",
    "Comparison": "cje.results.decision",
    "BestPolicy": "cje.results.decision",
    "CJEError": "cje.errors",
    "ConfigError": "cje.errors",
    "InputError": "cje.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cje' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
