"""Causal Judge Evaluation (CJE): calibrated LLM-judge estimates of policy value.

The package is organised one concept per module (see docs/architecture.md):
``data`` (loading and validation), ``folds``, ``calibration``, ``coverage``
(oracle masking), ``weights``, ``estimators`` (registry), ``inference``,
``diagnostics``, ``results`` (export), ``analysis`` (orchestration), ``llm``
(pipeline stages) and ``viz`` (plots and dashboards).
"""

__version__ = "0.1.0"
