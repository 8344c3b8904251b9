# Config checks, run by the Snakefile at DAG-build time: a bad config fails before
# any job (and so before any API call) with a message naming the config key.

import os
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError

SCHEMA_FILE = Path(workflow.basedir) / "schemas" / "config.schema.yaml"
with open(SCHEMA_FILE) as _fh:
    CONFIG_SCHEMA = yaml.safe_load(_fh)
ESTIMATORS = CONFIG_SCHEMA["$defs"]["estimator"]["enum"]


def config_key(path):
    """Dotted config key (``analysis.oracle_coverages[2]``) from a jsonschema error path."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "<top level>"


def check_config_schema(cfg):
    """Raise WorkflowError naming the config key of the first schema violation."""
    validator = jsonschema.Draft202012Validator(CONFIG_SCHEMA)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"config key '{config_key(e.absolute_path)}': {e.message}" for e in errors[:10]]
        raise WorkflowError("invalid workflow config:\n  " + "\n  ".join(lines))


def fail(key, message):
    """Raise the DAG-build-time config error for one key."""
    raise WorkflowError(f"invalid workflow config: config key '{key}': {message}")


def check_config_semantics(cfg):
    """Cross-key checks the schema cannot express (mode, references, files)."""
    analysis = cfg["analysis"]
    if (analysis["dataset"] is None) != (analysis["fresh_draws_dir"] is None):
        missing = "fresh_draws_dir" if analysis["fresh_draws_dir"] is None else "dataset"
        fail(f"analysis.{missing}", "analysis-only mode needs both analysis.dataset and "
             "analysis.fresh_draws_dir (or neither, to run the LLM stages)")
    if analysis["dataset"] is not None:
        if not os.path.isfile(analysis["dataset"]):
            fail("analysis.dataset", f"file not found: {analysis['dataset']}")
        if not os.path.isdir(analysis["fresh_draws_dir"]):
            fail("analysis.fresh_draws_dir", f"folder not found: {analysis['fresh_draws_dir']}")
        return
    policies = cfg["policies"]
    if not policies:
        fail("policies", "no policies configured (or set analysis.dataset for analysis-only mode)")
    if cfg["base_policy"] not in policies:
        fail("base_policy", f"'{cfg['base_policy']}' is not an entry of policies "
             f"({', '.join(policies)})")
    if len(policies) < 2:
        fail("policies", "needs at least one target policy besides the base policy")
    for name, spec in policies.items():
        if spec["provider"] not in cfg["providers"]:
            fail(f"policies.{name}.provider", f"unknown provider '{spec['provider']}' "
                 f"(providers: {', '.join(cfg['providers']) or 'none'})")
    for role in ("judge", "oracle"):
        if role not in cfg:
            fail(role, "missing (needed to score responses)")
        if cfg[role]["provider"] not in cfg["providers"]:
            fail(f"{role}.provider", f"unknown provider '{cfg[role]['provider']}'")
        rubric = cfg[role].get("rubric_file")
        if rubric and not os.path.isfile(rubric):
            fail(f"{role}.rubric_file", f"file not found: {rubric}")


def require_provider_key(provider_name, used_by):
    """Fail at DAG-build time when a hosted provider's key env var is unset.

    Called from the input functions of the LLM rules, so only the providers the
    requested targets actually need are checked.
    """
    provider = config["providers"][provider_name]
    env = provider.get("api_key_env")
    if provider["kind"] != "local" and env and not os.environ.get(env):
        fail(f"providers.{provider_name}.api_key_env",
             f"environment variable {env} is not set (needed by {used_by}); "
             f"export {env}=... before running")
    return []
