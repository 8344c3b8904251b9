"""Rule prompts: the seeded prompt subset (cje prompts).

Runs ``cje prompts`` (cje/cli/llm.py) = :func:`cje.llm.stages.prompts.make_prompts`.
"""

from _cje_rule import effective_config, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
# a local prompt file is a declared input (edits rerun the stage); else a dataset name
source = sm.input.source[0] if sm.input.source else sm.params.source
argv = ["prompts", "--config", effective_config(sm), "--output", sm.output[0],
        "--source", source, "--seed", sm.params.seed]
if sm.params.n_samples is not None:
    argv += ["--n-samples", sm.params.n_samples]
run_cje(argv, sm.log[0])
