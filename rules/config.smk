# Config checks, run by the Snakefile at DAG-build time: a bad config fails before
# any job (and so before any API call) with a message naming the config key.
#
#   check_config_files      every config file read again with cje's bounded YAML loader (alias bombs)
#   check_config_schema     strict JSON schema (unknown keys at any depth), typed --config values
#   check_config_semantics  cross-key checks: references, files, analysis-only pair
#   (storage-aware cache folders: shared_path in rules/common.smk)
#   check_calibration_labels every requested (oracle coverage, seed) leaves >= 10 calibration labels
#   check_provider_keys     API keys of the jobs that will actually run (onstart, not at DAG time)

import os
import re
import sys
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError

# workflow.source_path: the schema next to this file, also when the workflow is
# used as a module (its rules then live in a source cache, not in the working dir).
SCHEMA_FILE = workflow.source_path("../schemas/config.schema.yaml")
with open(SCHEMA_FILE) as _fh:
    CONFIG_SCHEMA = yaml.safe_load(_fh)  # the workflow's own file: not user input
ESTIMATORS = CONFIG_SCHEMA["$defs"]["estimator"]["enum"]
# Snakemake puts the workflow's folder on sys.path, so the cje next to it is importable here:
# the base policy's name in results (no target may take it), and the one formatting of schema
# errors, shared with `cje cost --estimate`
from cje.llm.config_schema import schema_error_lines
from cje.names import BASE_POLICY_NAME

# cje.stats.calibration.MIN_ORACLE_LABELS (tests/workflow/test_config_errors.py checks they agree;
# not imported here: importing cje.stats.calibration costs the dry run a second).
MIN_CALIBRATION_LABELS = 10


def fail(key, message):
    """Stop on a config error naming ``key``.

    While the Snakefile is read and in ``onstart``: one line on stderr, exit code 2
    (no traceback; nothing holds a lock then, or the lock's ``with`` releases it).
    Inside input functions (DAG building, where Snakemake wraps every exception):
    a WorkflowError, which Snakemake prints with the rule and wildcards around it.
    """
    text = f"invalid workflow config: config key '{key}': {message}"
    if _ONE_LINE_ERRORS:
        print(text, file=sys.stderr, flush=True)
        raise SystemExit(2)
    raise WorkflowError(text)


_ONE_LINE_ERRORS = True  # the Snakefile turns it off after its top-level checks


def dag_time_errors():
    """Called by the Snakefile once its top-level checks passed: from here on (input
    functions) errors are WorkflowErrors; ``onstart`` turns one-line errors back on."""
    global _ONE_LINE_ERRORS
    _ONE_LINE_ERRORS = False


def one_line_errors():
    """Back to one-line errors with exit code 2 (``onstart``: no DAG building there)."""
    global _ONE_LINE_ERRORS
    _ONE_LINE_ERRORS = True


# --- the config files -------------------------------------------------------

def check_config_files(paths):
    """Read each config file again with cje's YAML reader, which refuses alias expansion
    beyond a small bound (cje/llm/yamlfile.py), before anything walks ``config``.

    An alias bomb loads into a small shared graph; the first walk over it as a tree (the
    schema check below, or Snakemake merging a ``configfile:`` into ``config``) runs out of
    memory. The Snakefile checks its default config file before the ``configfile:``
    directive merges it, and every file of the run (``workflow.configfiles``) before the
    schema check. Snakemake merges ``--configfile`` files before the Snakefile runs: a bomb
    made of nested mappings only is expanded there, out of the workflow's reach (one of
    lists, as in ``extra_body``, is not, and is refused here). One line naming the file,
    exit code 2; a missing file is left to Snakemake."""
    from cje.errors import CJEError
    from cje.llm.yamlfile import load_yaml

    for path in dict.fromkeys(map(str, paths)):
        if not os.path.isfile(path):
            continue
        try:
            load_yaml(path)
        except CJEError as exc:
            print(f"invalid workflow config: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2)


# --- schema -----------------------------------------------------------------

_CLI_SCALARS = {
    "integer": lambda s: int(s) if re.fullmatch(r"[+-]?\d+", s.strip()) else None,
    "number": lambda s: float(s) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?",
                                                 s.strip()) else None,
    "boolean": lambda s: {"true": True, "false": False}.get(s.strip().lower()),
}


def _cli_value(text, types):
    """``text`` (a --config value: snakemake parses nested values as strings) as the
    first schema type it spells, or None."""
    if "null" in types and text.strip() in ("null", "~", "None"):
        return ("null", None)
    for name in ("integer", "number", "boolean"):
        if name in types:
            value = _CLI_SCALARS[name](text)
            if value is not None:
                return (name, value)
    return None


def _from_cli(path):
    """True when the config value at ``path`` was given with --config on the command line."""
    node = workflow.config_settings.config
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def _set_at(cfg, path, value):
    node = cfg
    for part in list(path)[:-1]:
        node = node[part]
    node[list(path)[-1]] = value


def check_config_schema(cfg):
    """Validate ``cfg`` against the strict schema; raise WorkflowError naming every bad key.

    Numbers, booleans and nulls given inside a ``--config key='{...}'`` mapping reach
    the workflow as strings (snakemake parses nested values with YAML's base loader);
    they are converted to the type the schema asks for at that key. Unknown keys are
    named one per line with the closest known key.
    """
    validator = jsonschema.Draft202012Validator(CONFIG_SCHEMA)
    for _ in range(100):  # each pass converts the --config strings it can
        errors = [e for e in validator.iter_errors(cfg) if e.validator == "type"
                  and isinstance(e.instance, str) and _from_cli(e.absolute_path)]
        converted = False
        for e in errors:
            types = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
            value = _cli_value(e.instance, types)
            if value is not None:
                _set_at(cfg, e.absolute_path, value[1])
                converted = True
        if not converted:
            break
    lines = schema_error_lines(cfg, CONFIG_SCHEMA)
    if lines:
        # one line per bad key (at most 10), exit code 2
        print("\n".join(f"invalid workflow config: {line}" for line in lines[:10]), file=sys.stderr,
              flush=True)
        raise SystemExit(2)


# --- cross-key checks -------------------------------------------------------

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
    if BASE_POLICY_NAME in policies and cfg["base_policy"] != BASE_POLICY_NAME:
        fail(f"policies.{BASE_POLICY_NAME}", f"target policy name '{BASE_POLICY_NAME}' is reserved for "
             "the base (logging) policy in results and comparisons: rename the target policy")
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
    targets = len(policies) - 1
    if analysis["comparisons"] == "all" and targets * (targets + 1) // 2 > _max_all_pairs():
        fail("analysis.comparisons", f"'all' with {targets:,} target policies is "
             f"{targets * (targets + 1) // 2:,} pairs, more than the limit of {_max_all_pairs():,}; "
             "use 'base' (the default: each target against the base and the best against each other)")
    probe = analysis["probe_coverage"]
    if probe > 0 and cfg["oracle"]["fresh_draw_coverage"] == 0:
        fail("analysis.probe_coverage", f"{probe} asks for probe labels on fresh draws, but "
             "oracle.fresh_draw_coverage is 0 (the oracle labels no fresh draw)")


def _max_all_pairs():
    """cje.results.decision.MAX_ALL_PAIRS, the cap of ``cje analyze --comparisons all``."""
    from cje.results.decision import MAX_ALL_PAIRS

    return MAX_ALL_PAIRS


# --- calibration labels -----------------------------------------------------

def coverage_label(value):
    """The one spelling of an oracle coverage in paths: the shortest decimal, no
    exponent, no trailing zeros (0.10 -> '0.1', 1.0 -> '1', 1e-1 -> '0.1')."""
    text = format(Decimal(repr(float(value))).normalize(), "f")
    return text


def parse_coverage_wildcard(text):
    """The coverage of a ``coverage_{c}`` path component; fails unless ``c`` is canonical
    and in (0, 1], naming the spelling to use."""
    try:
        value = float(Decimal(text))
    except (InvalidOperation, ValueError):
        fail("analysis.oracle_coverages", f"'coverage_{text}' in a target path is not a number")
    if not 0 < value <= 1:
        fail("analysis.oracle_coverages", f"oracle coverage {text} in target path is outside (0, 1]")
    canonical = coverage_label(value)
    if text != canonical:
        fail("analysis.oracle_coverages", f"target path 'coverage_{text}': write 'coverage_{canonical}' "
             "(one spelling per coverage, so that 0.10, .1 and 1e-1 are not three analyses)")
    return value


@lru_cache(maxsize=None)
def _local_prompt_count(source):
    with open(source, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def n_logged_prompts():
    """Logged rows the LLM path will produce: prompts.n_samples, capped by the local
    prompt file's size (None when unknown: a Hugging Face source without n_samples)."""
    prompts = config["prompts"]
    n = prompts["n_samples"]
    if os.path.isfile(prompts["source"]):
        available = _local_prompt_count(prompts["source"])
        n = available if n is None else min(n, available)
    return n


@lru_cache(maxsize=None)
def _analysis_only_labels():
    """(oracle labels, judge-scored mask) of the analysis-only dataset, read with the
    analysis's own loader (cje.data.loaders), so the count below is the analysis's count."""
    import numpy as np
    from cje.data.loaders import load_logged_data
    from cje.errors import CJEError

    try:
        data = load_logged_data(config["analysis"]["dataset"], response_lengths=False)  # labels, scores only
    except CJEError as exc:
        fail("analysis.dataset", str(exc))
    return data.oracle_labels, np.isfinite(data.judge_scores)


@lru_cache(maxsize=None)
def calibration_labels(coverage, seed):
    """Oracle labels calibration gets at this (coverage, seed), and how that was counted.

    Analysis-only mode: exactly the analysis's count (cje.stats.oracle_mask.mask_oracle_labels on
    the dataset). LLM path, before any data exists: min(round(c x n), round(oracle.coverage
    x n)) for n logged prompts (the analysis keeps round(c x n) of the labels the oracle
    stage gave: cje/stats/oracle_mask.py; the oracle labels each row with probability
    oracle.coverage: docs/llm.md, so below 1 that part is its expected count). Rows whose
    judge or oracle call fails at run time can still lower it; the analysis then stops
    naming the count.
    """
    if ANALYSIS_ONLY:
        from cje.stats.oracle_mask import mask_oracle_labels

        labels, scored = _analysis_only_labels()
        used = mask_oracle_labels(labels, coverage, seed).used & scored
        return int(used.sum()), f"{int(used.sum())} of the {labels.size} logged rows of {DATASET}"
    n = n_logged_prompts()
    if n is None:
        return None, "unknown prompt count"
    wanted = int(round(coverage * n))
    labelled = int(round(config["oracle"]["coverage"] * n))
    how = f"round({coverage:g} x {n} prompts)"
    if labelled < wanted:
        how += f", of which the oracle labels round(oracle.coverage {config['oracle']['coverage']:g} x {n})"
    return min(wanted, labelled), how


def check_calibration_labels(coverage, seed, key):
    """Fail naming ``key`` when (coverage, seed) leaves fewer than 10 calibration labels."""
    n_labels, how = calibration_labels(float(coverage), int(seed))
    if n_labels is None or n_labels >= MIN_CALIBRATION_LABELS:
        return
    fix = "use a larger coverage"
    n = None if ANALYSIS_ONLY else n_logged_prompts()
    if n:
        smallest = (MIN_CALIBRATION_LABELS - 0.5) / n
        fix += f" (>= {float(Decimal(smallest).quantize(Decimal('0.01'), 'ROUND_UP')):g} for {n} prompts)"
        fix += " or more prompts (prompts.n_samples)"
    fail(key, f"oracle coverage {coverage_label(coverage)} with seed {seed} leaves {n_labels} "
         f"calibration labels ({how}); calibration needs at least {MIN_CALIBRATION_LABELS}: {fix}")


def check_configured_grid():
    """Every (coverage, seed) of the configured grid leaves enough calibration labels."""
    for i, coverage in enumerate(ANALYSIS["oracle_coverages"]):
        for seed in ANALYSIS["seeds"]:
            check_calibration_labels(coverage, seed, f"analysis.oracle_coverages[{i}]")


# --- API keys ---------------------------------------------------------------

def missing_provider_key(provider_name):
    """The unset key variable of a hosted provider, or None."""
    provider = config["providers"][provider_name]
    env = provider.get("api_key_env")
    if provider["kind"] != "local" and env and not os.environ.get(env):
        return env
    return None


def _natural_key(value):
    """Sort key of a wildcard value that puts shard 2 before shard 10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(value)))


def job_label(job):
    """``rule(wildcard=value, ...)``: one job, as the missing-key error names it."""
    wildcards = ", ".join(f"{name}={value}" for name, value in (job.wildcards_dict or {}).items())
    return f"{job.rule.name}({wildcards})"


def _job_order(job):
    return job.rule.name, tuple(_natural_key(v) for v in (job.wildcards_dict or {}).values())


def check_provider_keys(jobs):
    """Fail naming ``providers.<name>.api_key_env`` when jobs about to run need a
    hosted provider whose key variable is unset.

    Called from the Snakefile's ``onstart`` with the jobs that will actually run, so
    ``-n``, ``--dag``, ``--summary``, ``--list-changes``, ``--report`` and ``--touch``
    never need keys, and a finished hosted run can be inspected without them.

    The one-line error names every job that needs each missing key, sorted by rule
    and wildcards (never in the order Snakemake happens to schedule them), and every
    provider whose key is missing, by provider name.
    """
    needs = {}  # provider -> (config keys using it, jobs)
    for job in jobs:
        provider, used_by = job_provider(job.rule.name, job.wildcards)
        if provider is not None and missing_provider_key(provider):
            keys, needing = needs.setdefault(provider, (set(), []))
            keys.add(used_by)
            needing.append(job)
    if not needs:
        return
    clauses = []
    for provider in sorted(needs):
        env = missing_provider_key(provider)
        keys, needing = needs[provider]
        labels = [job_label(job) for job in sorted(needing, key=_job_order)]
        clauses.append(f"environment variable {env} is not set (needed by {', '.join(sorted(keys))}: "
                       f"{len(labels)} job{'s' if len(labels) != 1 else ''}: {', '.join(labels)}); "
                       f"export {env}=... before running")
    first, *others = sorted(needs)
    message = clauses[0] + "".join(f"; config key 'providers.{provider}.api_key_env': {clause}"
                                   for provider, clause in zip(others, clauses[1:]))
    fail(f"providers.{first}.api_key_env", message)
