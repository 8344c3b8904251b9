# cje-arena: Causal Judge Evaluation as a Snakemake workflow.
#
#   snakemake --cores 2 --profile profiles/local                      # the configured grid
#   snakemake --cores 8 results/dr-cpo/coverage_0.5/estimates.json    # one result
#   snakemake --profile profiles/slurm --configfile config/arena.yaml # hosted models on SLURM
#
# Targets, file layout, config keys, profiles, resume, sweeps, use as a module:
# docs/workflow.md. Every path below is relative to this file (also as a module).

from snakemake.utils import min_version, validate

min_version("9.0")


include: "rules/config.smk"


# A --configfile on the command line replaces this default instead of being merged
# into it (so config/arena.yaml does not inherit the local demo's policies). As a
# module with `config: config`, the importing workflow's config is used instead.
# The file is checked for YAML alias bombs before Snakemake merges it (the merge
# would expand one).
if not workflow.overwrite_configfiles:
    check_config_files(["config/config.yaml"])

    configfile: "config/config.yaml"


report: "report/workflow.rst"


check_config_files(workflow.configfiles)  # --configfile too: before anything walks the config
check_config_schema(config)  # strict: unknown keys at any depth; errors name the key
validate(config, "schemas/config.schema.yaml")  # fills the defaults
check_config_semantics(config)


include: "rules/common.smk"


check_configured_grid()  # every (coverage, seed) leaves >= 10 calibration labels
dag_time_errors()  # from here on (input functions) config errors are WorkflowErrors


wildcard_constraints:
    policy=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    shard=r"\d+",
    nshards=r"\d+",
    estimator=r"[a-z0-9-]+",
    coverage=r"[0-9]*\.?[0-9]+(e-?[0-9]+)?",
    seed=r"0|[1-9][0-9]*",


localrules:
    all,


rule all:
    default_target: True
    input:
        all_targets(),


if not ANALYSIS_ONLY:  # analysis-only mode (analysis.dataset set) has no LLM stage

    include: "rules/prompts.smk"
    include: "rules/generate.smk"
    include: "rules/logprobs.smk"
    include: "rules/judge.smk"
    include: "rules/oracle.smk"
    include: "rules/dataset.smk"
    include: "rules/cost.smk"


include: "rules/analyze.smk"
include: "rules/summary.smk"


# API keys are checked here, for the jobs that will actually run, not when the DAG
# is built: -n, --dag, --summary, --list-changes, --report and --touch need no key.
onstart:
    one_line_errors()
    if not workflow.touch:
        check_provider_keys(workflow.dag.needrun_jobs())
