"""Rule cost: tokens and money per stage and provider from the API call log (cje cost).

Runs ``cje cost`` (cje/cli/cost.py) = :func:`cje.llm.cost.read_costs`.
"""

from _cje_rule import effective_config, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_cje(["cost", "--log", sm.params.api_log, "--config", effective_config(sm), "--output", sm.output[0]],
        sm.log[0])
