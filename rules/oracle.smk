# Stage 5: the expensive oracle labels a seeded share of every policy's rows
# (oracle.coverage of the logged rows, oracle.fresh_draw_coverage of the fresh draws),
# one job per (policy, shard) (cje oracle), gathered into data/oracle/{policy}.jsonl.
# Each policy's params carry only the share that applies to it, so changing
# oracle.fresh_draw_coverage leaves the base policy's oracle jobs alone.


rule oracle:
    input:
        responses="data/responses/{policy}.jsonl",
        **rubric_input("oracle"),
    output:
        "data/shards/oracle/{policy}/{shard}-of-{nshards}.jsonl",
    params:
        scorer_spec=lambda w: scorer_spec("oracle", w.policy),
        runtime=llm_runtime(),
        code=code_hash("llm"),
        coverage=lambda w: oracle_coverage_for(w.policy),
        seed=config["oracle"]["seed"],
    log:
        "logs/oracle/{policy}/{shard}-of-{nshards}.log",
    benchmark:
        "logs/benchmarks/oracle/{policy}/{shard}-of-{nshards}.tsv"
    threads: provider_threads(provider_of("oracle"))
    resources:
        mem_mb=2000,
        runtime=240,
        **provider_resources("oracle"),
    conda:
        llm_conda_env("oracle")
    script:
        "../scripts/oracle.py"


localrules:
    merge_oracle,


rule merge_oracle:
    input:
        lambda w: shard_files("oracle", w.policy),
    output:
        "data/oracle/{policy}.jsonl",
    params:
        code=code_hash("llm"),
    log:
        "logs/merge/oracle/{policy}.log",
    benchmark:
        "logs/benchmarks/merge/oracle/{policy}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/merge.py"
