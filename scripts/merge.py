"""Rules merge_*: gather a stage's shards into one file, deduplicated and sorted (cje merge)."""

from _cje_rule import run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_cje(["merge", "--inputs", *sm.input, "--output", sm.output[0]], sm.log[0])
