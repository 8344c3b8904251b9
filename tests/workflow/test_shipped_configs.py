"""Every shipped config builds its DAG, and the config the workflow hands to the
stages (defaults filled by the schema) is accepted by the stages' own config parser."""

from __future__ import annotations

import pytest
from snakemake.utils import validate

from cje.llm.config import load_config, policy_config, provider_config, scorer_config

from .wfutil import run_snakemake

CONFIGS = ["config/config.yaml", "config/arena.yaml", ".test/config/config.yaml",
           ".test/config/analysis_only.yaml"]


@pytest.mark.parametrize("configfile", CONFIGS)
def test_shipped_config_builds_and_stages_accept_it(workflow_dir, configfile):
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


def test_test_folder_is_self_contained(workflow_dir):
    """.test/ reads only files inside the repository (the module/CI data is shipped)."""
    for configfile in (".test/config/config.yaml", ".test/config/analysis_only.yaml"):
        cfg = load_config(workflow_dir / configfile)
        paths = [cfg.get("prompts", {}).get("source"), cfg["analysis"].get("dataset"),
                 cfg["analysis"].get("fresh_draws_dir"),
                 *(cfg.get(role, {}).get("rubric_file") for role in ("judge", "oracle"))]
        for path in filter(None, paths):
            assert not path.startswith(("/", "..")), (configfile, path)
            assert (workflow_dir / path).exists(), (configfile, path)
