"""Rules merge_*: gather a stage's shards into one file, deduplicated and sorted (cje merge).

Runs ``cje merge`` (cje/cli/llm.py) = :func:`cje.llm.stages.dataset.merge_shards`.
"""

from _cje_rule import run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_cje(["merge", "--inputs", *sm.input, "--output", sm.output[0]], sm.log[0])
