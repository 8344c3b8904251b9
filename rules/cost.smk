# Stage 9: what the run cost (cje cost): calls, tokens and money per stage and provider,
# summed from the stage summaries in the API call log, with a warning for every hosted
# provider without prices and for stages killed before their summary (docs/api.md, "Cost").
#   snakemake results/cost.json
# Included by the Snakefile for runs with LLM stages (not in analysis-only mode). The call
# log is a side file appended by every LLM job, not a declared output: rerun this rule
# (snakemake -R cost results/cost.json) to refresh it after more jobs ran.


localrules:
    cost,


rule cost:
    input:
        # the dataset is built after every LLM stage of the run has finished
        dataset="data/cje_dataset.jsonl",
    output:
        "results/cost.json",
    params:
        api_log=API_LOG,
    log:
        "logs/cost.log",
    benchmark:
        "logs/benchmarks/cost.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/cost.py"
