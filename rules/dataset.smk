# Stage 6: join responses, log-probs, judge scores and oracle labels into the
# logged dataset (data/cje_dataset.jsonl, base policy rows) and the fresh-draw
# files of the target policies (cje dataset). The stage's folders are those of the
# declared inputs/outputs (scripts/dataset.py), so storage plugins stage them.
# It also writes the columnar copy the analyses read (data/columnar/: the same
# rows and fields as Parquet), so no analysis job parses the JSONL texts again.


rule dataset:
    input:
        responses=expand("data/responses/{policy}.jsonl", policy=POLICIES),
        logprobs=expand("data/logprobs/{policy}.jsonl", policy=POLICIES),
        judge=expand("data/judge/{policy}.jsonl", policy=POLICIES),
        oracle=expand("data/oracle/{policy}.jsonl", policy=POLICIES),
    output:
        dataset="data/cje_dataset.jsonl",
        fresh_draws=expand("data/fresh_draws/{policy}_responses.jsonl", policy=TARGETS),
        dataset_parquet=COLUMNAR_DATASET,
        fresh_draws_parquet=expand(COLUMNAR_FRESH_DRAWS, policy=TARGETS),
    params:
        base_policy=BASE,
        code=code_hash("llm"),
    log:
        "logs/dataset.log",
    benchmark:
        "logs/benchmarks/dataset.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/dataset.py"
