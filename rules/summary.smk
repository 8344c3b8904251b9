# Stage 8: the sweep summary over the configured grid (cje summarize):
# results/summary.csv (one row per estimator x coverage x seed x policy) and
# results/summary.html. `snakemake --report report.html` collects these and the plots.


localrules:
    summary,


rule summary:
    input:
        analysis_targets(),
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
        results_dir=lambda w, output: os.path.dirname(output.csv),
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
        "../envs/cje.yaml"
    script:
        "../scripts/summarize.py"
