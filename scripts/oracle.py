"""Rule oracle: one shard of one policy's rows labelled by the oracle (cje oracle).

Runs ``cje oracle`` (cje/cli/llm.py) = :func:`cje.llm.stages.judge.score_responses` with role ``oracle``.
"""

from _cje_rule import effective_config, llm_flags, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
run_cje(["oracle", "--config", effective_config(sm), "--input", sm.input.responses,
         "--output", sm.output[0], "--coverage", sm.params.coverage, "--seed", sm.params.seed,
         "--shard", w.shard, "--num-shards", w.nshards, *llm_flags(sm)], sm.log[0])
