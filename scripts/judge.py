"""Rule judge: one shard of one policy's rows scored by the judge (cje judge).

Runs ``cje judge`` (cje/cli/llm.py) = :func:`cje.llm.stages.judge.score_responses` with role ``judge``.
"""

from _cje_rule import effective_config, llm_flags, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
run_cje(["judge", "--config", effective_config(sm), "--input", sm.input.responses,
         "--output", sm.output[0], "--shard", w.shard, "--num-shards", w.nshards,
         *llm_flags(sm)], sm.log[0])
