"""Rule generate: one shard of one policy's responses (cje generate); answered
requests come from the request cache, so a rerun sends only what is missing.

Runs ``cje generate`` (cje/cli/llm.py) = :func:`cje.llm.stages.generate.generate_responses`.
"""

from _cje_rule import effective_config, llm_flags, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
run_cje(["generate", "--config", effective_config(sm), "--policy", w.policy,
         "--prompts", sm.input.prompts, "--output", sm.output[0],
         "--draws-per-prompt", sm.params.draws_per_prompt,
         "--shard", w.shard, "--num-shards", w.nshards, *llm_flags(sm)], sm.log[0])
