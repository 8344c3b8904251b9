"""Rule dataset: the logged dataset and the fresh-draw files, in JSONL and as the Parquet copy (cje dataset).

Runs ``cje dataset`` (cje/cli/llm.py) = :func:`cje.llm.stages.dataset.assemble_dataset`.
"""

import os

from _cje_rule import effective_config, run_cje

sm = snakemake  # noqa: F821 (injected by Snakemake)
folder = {name: os.path.dirname(sm.input[name][0]) for name in ("responses", "logprobs", "judge", "oracle")}
run_cje(["dataset", "--config", effective_config(sm),
         "--responses-dir", folder["responses"], "--logprobs-dir", folder["logprobs"],
         "--judge-dir", folder["judge"], "--oracle-dir", folder["oracle"],
         "--output", sm.output.dataset,
         "--fresh-draws-dir", os.path.dirname(sm.output.fresh_draws[0]),
         "--parquet-output", sm.output.dataset_parquet,
         "--parquet-fresh-draws-dir", os.path.dirname(sm.output.fresh_draws_parquet[0])], sm.log[0])
