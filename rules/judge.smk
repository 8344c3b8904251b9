# Stage 4: the cheap judge scores every row of every policy (logged rows and fresh
# draws), one job per (policy, shard) (cje judge), gathered into data/judge/{policy}.jsonl.


rule judge:
    input:
        responses="data/responses/{policy}.jsonl",
        **rubric_input("judge"),
    output:
        "data/shards/judge/{policy}/{shard}-of-{nshards}.jsonl",
    params:
        scorer_spec=lambda w: scorer_spec("judge", w.policy),
        runtime=llm_runtime(),
        code=code_hash("llm"),
    log:
        "logs/judge/{policy}/{shard}-of-{nshards}.log",
    benchmark:
        "logs/benchmarks/judge/{policy}/{shard}-of-{nshards}.tsv"
    threads: provider_threads(provider_of("judge"))
    resources:
        mem_mb=2000,
        runtime=240,
        **provider_resources("judge"),
    conda:
        llm_conda_env("judge")
    script:
        "../scripts/judge.py"


localrules:
    merge_judge,


rule merge_judge:
    input:
        lambda w: shard_files("judge", w.policy),
    output:
        "data/judge/{policy}.jsonl",
    params:
        code=code_hash("llm"),
    log:
        "logs/merge/judge/{policy}.log",
    benchmark:
        "logs/benchmarks/merge/judge/{policy}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/merge.py"
