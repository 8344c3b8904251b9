"""Rule logprobs: one shard of the base responses scored under one policy (cje logprobs)."""

from _cje_rule import cache_file, effective_config, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
cache = cache_file(sm.params.cache_dir, f"{w.shard}-of-{w.nshards}", [sm.input.responses],
                   sm.params.policy_spec)
cache_dir = cache[: -len(".cache.jsonl")]  # one folder per (inputs, spec) key
run_cje(["logprobs", "--config", effective_config(sm), "--responses", sm.input.responses,
         "--policies", w.policy, "--output-dir", sm.params.output_dir,
         "--shard", w.shard, "--num-shards", w.nshards, "--cache-dir", cache_dir], sm.log[0])
