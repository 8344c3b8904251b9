"""Rule prompts: the seeded prompt subset (cje prompts)."""

from _cje_rule import effective_config, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
argv = ["prompts", "--config", effective_config(sm), "--output", sm.output[0],
        "--source", sm.params.source, "--seed", sm.params.seed]
if sm.params.n_samples is not None:
    argv += ["--n-samples", sm.params.n_samples]
run_cje(argv, sm.log[0])
