# Stage 1: the prompt set (cje prompts).


rule prompts:
    input:
        source=prompt_source_input,
    output:
        "data/prompts.jsonl",
    params:
        source=config["prompts"]["source"],
        n_samples=config["prompts"]["n_samples"],
        seed=config["prompts"]["seed"],
        code=code_hash("llm"),
    log:
        "logs/prompts.log",
    benchmark:
        "logs/benchmarks/prompts.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/llm.yaml"
    script:
        "../scripts/prompts.py"
