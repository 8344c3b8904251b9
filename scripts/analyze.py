"""Rules analyze / analyze_replicate: one estimator at one oracle coverage and seed (cje analyze).

Runs ``cje analyze`` (cje/cli/analyze.py) = :func:`cje.api.analyze` then :func:`cje.results.files.publish_analysis`; the analysis itself is :func:`cje.analysis.run.run_analysis`.
"""

import os

from _cje_rule import run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
p = sm.params
argv = ["analyze", "--data", sm.input.dataset, "--estimator", sm.wildcards.estimator,
        "--oracle-coverage", sm.wildcards.coverage, "--seed", p.seed,
        "--probe-coverage", p.probe_coverage, "--comparisons", p.comparisons,
        "--output-dir", os.path.dirname(sm.output.estimates)]
if sm.input.fresh_draws:
    # the folder of the declared fresh-draw files (a storage plugin's local copies)
    argv += ["--fresh-draws-dir", os.path.dirname(sm.input.fresh_draws[0])]
if "plots" in sm.output.keys():  # analysis.plots: the rule declares plots/
    argv.append("--plots")
if p.refuse_unreliable:
    argv.append("--refuse-unreliable")
if p.allow_missing_fresh_draws:
    argv.append("--allow-missing-fresh-draws")
run_cje(argv, sm.log[0], ok_codes=(0, 3))  # 3: --refuse-unreliable withheld an estimate (files written)
