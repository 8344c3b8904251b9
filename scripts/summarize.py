"""Rule summary: the sweep summary table and page (cje summarize)."""

from _cje_rule import run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_cje(["summarize", "--results-dir", sm.params.results_dir,
         "--output", sm.output.csv, "--html", sm.output.html], sm.log[0])
