# Stage 8: the sweep summary over the configured grid (cje summarize):
# results/summary.csv (one row per estimator x coverage x seed x policy) and
# results/summary.html. It reads exactly its declared inputs (the estimates.json of
# the configured grid, passed as a file list), never a glob over results/: other
# folders there (other estimators, a stale coverage_0.50) are not in the summary. With LLM
# stages it also shows results/cost.json (rule cost): calls, tokens and money per stage.
# `snakemake --report report.html` collects these and the plots.


localrules:
    summary,


rule summary:
    input:
        # the configured grid's estimates.json, and with LLM stages the run's cost (rule cost)
        unpack(summary_inputs),
    output:
        csv=report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "summary.csv"},
        ),
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "summary.html"},
        ),
    params:
        code=code_hash("analysis"),
    log:
        "logs/summary.log",
    benchmark:
        "logs/benchmarks/summary.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/summarize.py"
