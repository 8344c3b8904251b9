"""Rule summary: the sweep summary table and page (cje summarize) over exactly the
rule's declared inputs (the configured grid's estimates.json), never a glob.

Runs ``cje summarize`` (cje/cli/summarize.py) = :func:`cje.viz.sweep.load_summary` and :func:`cje.viz.sweep_report.write_summary_html`.
"""

import os

from _cje_rule import run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
# --results-dir only names the sources (paths relative to the results folder, which is
# the folder of the declared output: a storage plugin's local copy when one is used)
run_cje(["summarize", "--inputs", *sm.input.estimates, "--results-dir", os.path.dirname(sm.output.csv),
         "--output", sm.output.csv, "--html", sm.output.html], sm.log[0])
