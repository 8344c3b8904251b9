# Stage 3: teacher-forced log-probs of the base (logged) responses under every
# policy, one job per (policy, shard) (cje logprobs --policies P), gathered into
# data/logprobs/{policy}.jsonl. The base policy's own column is base_policy_logprob.


rule logprobs:
    input:
        responses=f"data/responses/{BASE}.jsonl",
    output:
        "data/shards/logprobs/{policy}/{shard}-of-{nshards}/{policy}.jsonl",
    params:
        policy_spec=lambda w: policy_spec(w.policy),
        runtime=llm_runtime(),
        code=code_hash("llm"),
    log:
        "logs/logprobs/{policy}/{shard}-of-{nshards}.log",
    benchmark:
        "logs/benchmarks/logprobs/{policy}/{shard}-of-{nshards}.tsv"
    threads: lambda w: provider_threads(provider_of("logprobs", w.policy))
    resources:
        mem_mb=2000,
        runtime=240,
        **provider_resources("logprobs"),
    conda:
        llm_conda_env("logprobs")
    script:
        "../scripts/logprobs.py"


localrules:
    merge_logprobs,


rule merge_logprobs:
    input:
        lambda w: [
            f"data/shards/logprobs/{w.policy}/{i}-of-{NSHARDS}/{w.policy}.jsonl" for i in SHARDS
        ],
    output:
        "data/logprobs/{policy}.jsonl",
    params:
        code=code_hash("llm"),
    log:
        "logs/merge/logprobs/{policy}.log",
    benchmark:
        "logs/benchmarks/merge/logprobs/{policy}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/merge.py"
