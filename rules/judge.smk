# Stage 4: the cheap judge scores every row of every policy (logged rows and fresh
# draws), one job per (policy, shard) (cje judge), gathered into data/judge/{policy}.jsonl.


rule judge:
    input:
        unpack(judge_input),
    output:
        "data/shards/judge/{policy}/{shard}-of-{nshards}.jsonl",
    params:
        scorer_spec=lambda w: scorer_spec("judge", w.policy),
        cache_dir=lambda w: f"data/cache/judge/{w.policy}",
        code=code_hash("llm"),
    log:
        "logs/judge/{policy}/{shard}-of-{nshards}.log",
    benchmark:
        "logs/benchmarks/judge/{policy}/{shard}-of-{nshards}.tsv"
    threads: provider_threads(config["judge"]["provider"])
    resources:
        mem_mb=2000,
        runtime=240,
    conda:
        "../envs/cje.yaml"
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
        "../envs/cje.yaml"
    script:
        "../scripts/merge.py"
