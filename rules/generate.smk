# Stage 2: responses of every policy, one job per (policy, shard) (cje generate),
# gathered into data/responses/{policy}.jsonl (cje merge). The base policy's
# responses are the logged data; a target policy's responses are its fresh draws.
# Every LLM rule has params.runtime (the storage-aware request cache, rate-limit
# state and API log; not a rerun trigger), resources api_<provider> and a conda env
# with llama.cpp only for the local model (rules/common.smk).


rule generate:
    input:
        prompts="data/prompts.jsonl",
    output:
        "data/shards/responses/{policy}/{shard}-of-{nshards}.jsonl",
    params:
        policy_spec=lambda w: policy_spec(w.policy),
        draws_per_prompt=lambda w: draws_for(w.policy),
        runtime=llm_runtime(),
        code=code_hash("llm"),
    log:
        "logs/generate/{policy}/{shard}-of-{nshards}.log",
    benchmark:
        "logs/benchmarks/generate/{policy}/{shard}-of-{nshards}.tsv"
    threads: lambda w: provider_threads(provider_of("generate", w.policy))
    resources:
        mem_mb=2000,
        runtime=240,
        **provider_resources("generate"),
    conda:
        llm_conda_env("generate")
    script:
        "../scripts/generate.py"


localrules:
    merge_responses,


rule merge_responses:
    input:
        lambda w: shard_files("responses", w.policy),
    output:
        "data/responses/{policy}.jsonl",
    params:
        code=code_hash("llm"),
    log:
        "logs/merge/responses/{policy}.log",
    benchmark:
        "logs/benchmarks/merge/responses/{policy}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/merge.py"
