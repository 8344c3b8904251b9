"""Rule generate: one shard of one policy's responses (cje generate), resumable."""

from _cje_rule import cache_file, effective_config, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
cache = cache_file(sm.params.cache_dir, f"{w.shard}-of-{w.nshards}", [sm.input.prompts],
                   sm.params.policy_spec + f"|draws={sm.params.draws_per_prompt}")
run_cje(["generate", "--config", effective_config(sm), "--policy", w.policy,
         "--prompts", sm.input.prompts, "--output", sm.output[0],
         "--draws-per-prompt", sm.params.draws_per_prompt,
         "--shard", w.shard, "--num-shards", w.nshards,
         "--cache", cache, "--batch-size", sm.params.batch_size], sm.log[0])
