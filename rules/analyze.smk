# Stage 7: one analysis per (estimator, oracle coverage[, seed]) (cje analyze).
#   results/{estimator}/coverage_{coverage}/estimates.json          first seed of analysis.seeds
#   results/{estimator}/coverage_{coverage}/seed_{seed}/estimates.json  any replicate seed
# Sweep: `snakemake results/{e}/coverage_{c}/estimates.json ...` for many e, c in ONE call.
# The fresh-draw folder the stage reads is the folder of the declared fresh-draw
# inputs (scripts/analyze.py), so storage plugins see every file it reads.
# `--plots` is passed when the rule declares a plots/ output (analysis.plots): not a
# param, so switching plots off reruns nothing, and switching them on reruns the
# analyses whose plots/ rule `all` asks for.
# Small jobs: profiles/slurm groups them (group "analyses") into few cluster jobs.


rule analyze:
    input:
        unpack(analysis_inputs),
    output:
        **analysis_outputs("results/{estimator}/coverage_{coverage}"),
    params:
        seed=config["analysis"]["seeds"][0],
        probe_coverage=config["analysis"]["probe_coverage"],
        refuse_unreliable=config["analysis"]["refuse_unreliable"],
        allow_missing_fresh_draws=config["analysis"]["allow_missing_fresh_draws"],
        comparisons=config["analysis"]["comparisons"],
        code=code_hash("analysis"),
    log:
        "logs/analyze/{estimator}/coverage_{coverage}.log",
    benchmark:
        "logs/benchmarks/analyze/{estimator}/coverage_{coverage}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/analyze.py"


use rule analyze as analyze_replicate with:
    output:
        **analysis_outputs("results/{estimator}/coverage_{coverage}/seed_{seed}"),
    params:
        seed=lambda w: int(w.seed),
        probe_coverage=config["analysis"]["probe_coverage"],
        refuse_unreliable=config["analysis"]["refuse_unreliable"],
        allow_missing_fresh_draws=config["analysis"]["allow_missing_fresh_draws"],
        comparisons=config["analysis"]["comparisons"],
        code=code_hash("analysis"),
    log:
        "logs/analyze/{estimator}/coverage_{coverage}/seed_{seed}.log",
    benchmark:
        "logs/benchmarks/analyze/{estimator}/coverage_{coverage}/seed_{seed}.tsv"
