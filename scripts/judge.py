"""Rule judge: one shard of one policy's rows scored by the judge (cje judge), resumable."""

from _cje_rule import cache_file, effective_config, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
inputs = [sm.input.responses] + ([sm.input.rubric] if "rubric" in sm.input.keys() else [])
cache = cache_file(sm.params.cache_dir, f"{w.shard}-of-{w.nshards}", inputs, sm.params.scorer_spec)
run_cje(["judge", "--config", effective_config(sm), "--input", sm.input.responses,
         "--output", sm.output[0], "--shard", w.shard, "--num-shards", w.nshards,
         "--cache", cache], sm.log[0])
