"""Every shipped config builds its DAG, and the config the workflow hands to the
stages (defaults filled by the schema) is accepted by the stages' own config parser."""

from __future__ import annotations

import pytest
from snakemake.utils import validate

from cje.llm.config import load_config, policy_config, provider_config, scorer_config

from .wfutil import ARENA_SAMPLE, run_snakemake

CONFIGS = ["config/config.yaml", "config/arena.yaml", ".test/config/config.yaml",
           ".test/config/analysis_only.yaml"]


@pytest.mark.parametrize("configfile", CONFIGS)
def test_shipped_config_builds_and_stages_accept_it(workflow_dir, configfile):
    if configfile == ".test/config/analysis_only.yaml":
        # the arena sample lives next to the checkout; the copy is elsewhere
        text = (workflow_dir / configfile).read_text()
        (workflow_dir / configfile).write_text(
            text.replace("../shared/data/arena_sample", str(ARENA_SAMPLE)))
    env = {"FIREWORKS_API_KEY": "dry-run", "OPENAI_API_KEY": "dry-run"}
    proc = run_snakemake(workflow_dir, "-n", "--configfile", configfile, env=env)
    assert "Job stats" in proc.stdout, proc.stdout + proc.stderr
    # what a job hands to `cje <stage> --config`: the config after the Snakefile's
    # validate() filled the defaults (scripts/_cje_rule.py: effective_config)
    cfg = load_config(workflow_dir / configfile)
    validate(cfg, str(workflow_dir / "schemas" / "config.schema.yaml"))
    if cfg["analysis"]["dataset"] is not None:
        assert "dataset" not in proc.stdout.split("Job stats")[1]  # no LLM stage
        return
    for name in cfg["providers"]:
        provider_config(cfg, name)
    for name in cfg["policies"]:
        assert policy_config(cfg, name).model == cfg["policies"][name]["model"]
    for role in ("judge", "oracle"):
        scorer_config(cfg, role)
