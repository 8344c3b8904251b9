"""Rule logprobs: one shard of the base responses scored under one policy (cje logprobs).

Runs ``cje logprobs`` (cje/cli/local.py) = :func:`cje.llm.stages.logprobs.run_logprobs`.
"""

import os

from _cje_rule import effective_config, llm_flags, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
# the stage writes OUTPUT_DIR/{policy}.jsonl: the folder of the declared output
run_cje(["logprobs", "--config", effective_config(sm), "--responses", sm.input.responses,
         "--policies", w.policy, "--output-dir", os.path.dirname(sm.output[0]),
         "--shard", w.shard, "--num-shards", w.nshards, *llm_flags(sm)], sm.log[0])
