# Names, target lists, storage-aware paths, resources and the code-hash params
# shared by every rule file. Included by the Snakefile after the config was checked
# and its defaults filled.

import glob
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace


# --- the cje package the jobs run ---------------------------------------------
# The rule scripts import `cje` from the workflow's own source tree when it has one
# (scripts/_cje_rule.py puts it first on sys.path), else from the environment
# (a deployed module: `pip install cje-arena`). The code hashes read the same files.

def _package_root():
    """Folder holding the `cje` package the jobs import (see scripts/_cje_rule.py)."""
    here = workflow.current_basedir
    if isinstance(here, str) and os.path.isfile(os.path.join(here, "..", "cje", "__init__.py")):
        return Path(here).parent.resolve()
    spec = importlib.util.find_spec("cje")
    if spec is None or not spec.submodule_search_locations:
        raise WorkflowError("the cje package is neither next to the workflow nor installed "
                            "(pip install cje-arena, see docs/workflow.md 'As a module')")
    return Path(list(spec.submodule_search_locations)[0]).parent


PACKAGE_ROOT = _package_root()

# --- code-hash params -------------------------------------------------------
# Snakemake does not track code inside the imported `cje` package. Each rule gets
# a params value hashing the source files it uses, so a real edit reruns exactly
# the affected rules and a bare `touch` does not.
CODE_GROUPS = {
    # LLM stages: client, stages, local server, templates, and the commands that run them.
    "llm": {"include": ["cje/llm/**/*.py", "cje/errors.py", "cje/atomic.py", "cje/names.py",
                        "cje/__init__.py", "cje/cli/__init__.py", "cje/cli/llm.py", "cje/cli/local.py"],
            "exclude": []},
    # analysis + plots + summary: the whole package except the LLM stages and their commands.
    "analysis": {"include": ["cje/**/*.py", "cje/**/*.json"],
                 "exclude": ["cje/llm/", "cje/cli/llm.py", "cje/cli/local.py"]},
}
_CODE_HASHES = {}


def code_hash(group):
    """sha256 (16 hex) over the relative paths and contents of a code group's files."""
    if group not in _CODE_HASHES:
        base = PACKAGE_ROOT
        spec = CODE_GROUPS[group]
        files = set()
        for pattern in spec["include"]:
            files.update(glob.glob(str(base / pattern), recursive=True))
        digest = hashlib.sha256()
        for name in sorted(files):
            rel = os.path.relpath(name, base)
            if any(rel.startswith(prefix) for prefix in spec["exclude"]) or "__pycache__" in rel:
                continue
            for chunk in (rel.encode(), b"\0", Path(name).read_bytes(), b"\0"):
                digest.update(chunk)
        _CODE_HASHES[group] = digest.hexdigest()[:16]
    return _CODE_HASHES[group]


def spec_json(obj):
    """Canonical JSON of a config section: a params value that changes only with it."""
    return json.dumps(obj, sort_keys=True)


# --- storage-aware paths for what outlives a job ----------------------------
# Inputs and outputs go through input:/output: (so storage plugins stage them). The
# API caches and the rate limiter's state are not outputs: they must be one folder
# that every job reaches and that outlives each job (a pod's disk does not).

def shared_path(path, key=None):
    """Where a cache folder (or the API call log) lives for this run.

    Absolute paths are used as given. A relative path is relative to the working
    directory, or, with ``--default-storage-provider fs``, to the storage prefix (a
    folder every job mounts, e.g. the shared volume of profiles/kubernetes). With any
    other storage provider (object storage) a folder cannot be shared that way: the
    config key ``key`` must then be an absolute path on a shared volume.
    """
    if os.path.isabs(path):
        return path
    settings = workflow.storage_settings
    provider = settings.default_storage_provider if settings is not None else None
    if provider is None:
        return path
    if provider == "fs" and settings.default_storage_prefix:
        return os.path.join(settings.default_storage_prefix, path)
    if key is not None:
        fail(key, f"'{path}' is relative, but with --default-storage-provider {provider} the jobs "
             "share no working directory: set an absolute path on a volume every job mounts")
    return path


REQUEST_CACHE_DIR = shared_path(config["execution"]["request_cache_dir"],
                                "execution.request_cache_dir")
RATE_LIMIT_DIR = shared_path(config["execution"]["rate_limit_dir"], "execution.rate_limit_dir")
# The API call log: appended to by every LLM job, so it lives with the caches.
API_LOG = shared_path("logs/api_calls.log")


def llm_runtime():
    """params.runtime of an LLM rule: the folders a job shares with every other job
    (request cache, rate-limit state) and the API call log. A SimpleNamespace, which
    Snakemake's params rerun trigger does not compare (only plain data is), so
    moving a cache folder or switching storage reruns nothing (tests/workflow checks it).
    """
    return SimpleNamespace(request_cache_dir=REQUEST_CACHE_DIR, rate_limit_dir=RATE_LIMIT_DIR,
                           api_log=API_LOG)


# --- names and targets ------------------------------------------------------
ANALYSIS = config["analysis"]
ANALYSIS_ONLY = ANALYSIS["dataset"] is not None
BASE = config["base_policy"]
POLICIES = [] if ANALYSIS_ONLY else list(config["policies"])
TARGETS = [p for p in POLICIES if p != BASE]
NSHARDS = config["execution"]["shards"]
SHARDS = list(range(NSHARDS))
DATASET = ANALYSIS["dataset"] or "data/cje_dataset.jsonl"
FRESH_DRAWS_DIR = ANALYSIS["fresh_draws_dir"] or "data/fresh_draws"
# the columnar copy rule dataset writes beside the JSONL; the analyses read it
COLUMNAR_DATASET = "data/columnar/cje_dataset.parquet"
COLUMNAR_FRESH_DRAWS = "data/columnar/fresh_draws/{policy}_responses.parquet"


def provider_of(role, policy=None):
    """Provider name of a policy's generate/logprobs jobs or of the judge/oracle."""
    if role in ("generate", "logprobs"):
        return config["policies"][policy]["provider"]
    return config[role]["provider"]


def job_provider(rule_name, wildcards):
    """(provider, config key using it) of an LLM job, (None, None) for other rules."""
    if rule_name in ("generate", "logprobs"):
        return provider_of(rule_name, wildcards.policy), f"policies.{wildcards.policy}"
    if rule_name in ("judge", "oracle"):
        return provider_of(rule_name), rule_name
    return None, None


def _provider_spec(name):
    provider = config["providers"][name]
    return {k: provider.get(k) for k in ("kind", "base_url", "model_package")}


def policy_spec(policy):
    """Everything that defines a policy's outputs: its config entry and its provider's model."""
    spec = dict(config["policies"][policy])
    spec["_provider"] = _provider_spec(spec["provider"])
    return spec_json(spec)


# Oracle keys that select rows rather than define the scoring procedure: only the
# one that applies to a policy (coverage for the base, fresh_draw_coverage for the
# targets) goes into that policy's params, so changing the fresh-draw share never
# reruns the base policy's oracle.
_SELECTION_KEYS = ("coverage", "fresh_draw_coverage")


def scorer_spec(role, policy):
    """Judge/oracle spec for one policy's rows: the scoring procedure, its provider,
    and for the oracle the share of this policy's rows it labels."""
    spec = {k: v for k, v in config[role].items() if k not in _SELECTION_KEYS}
    spec["_provider"] = _provider_spec(spec["provider"])
    if role == "oracle":
        spec["_coverage"] = oracle_coverage_for(policy)
    return spec_json(spec)


def oracle_coverage_for(policy):
    """Share of a policy's rows the oracle labels: logged rows vs fresh draws."""
    key = "coverage" if policy == BASE else "fresh_draw_coverage"
    return config["oracle"][key]


def draws_for(policy):
    """Responses per prompt: one for the logged base policy, draws_per_prompt for targets."""
    return 1 if policy == BASE else config["fresh_draws"]["draws_per_prompt"]


def provider_threads(provider_name):
    """Threads a job of this provider uses: llama.cpp threads for local, 1 for hosted APIs."""
    provider = config["providers"][provider_name]
    return provider.get("n_threads", 1) if provider["kind"] == "local" else 1


# --- per-provider resources -------------------------------------------------
# Every LLM job claims 1 unit of the resource api_<provider> of the provider it
# calls (0 of the others). `--resources api_<provider>=N` (profiles/slurm) caps how
# many jobs call one provider at once, on a cluster too; the rate limit across those
# jobs is the shared limiter's (execution.rate_limit_dir; docs/workflow.md "Rate limits").

def provider_resource(name):
    """Resource name of a provider: api_<name>."""
    return f"api_{name}"


def provider_resources(role):
    """{api_<provider>: callable} for every configured provider: 1 for the job's own."""
    def claim(name):
        if role in ("generate", "logprobs"):
            return lambda w: int(provider_of(role, w.policy) == name)
        return lambda w: int(provider_of(role) == name)

    return {provider_resource(name): claim(name) for name in config.get("providers", {})}


def llm_conda_env(role):
    """Conda env of an LLM rule: with llama-cpp-python only for the embedded local model."""
    def env(wildcards):
        provider = provider_of(role, getattr(wildcards, "policy", None))
        kind = config["providers"][provider]["kind"]
        return "../envs/llm-local.yaml" if kind == "local" else "../envs/llm.yaml"

    return env


def shard_files(stage, policy):
    """The per-shard outputs one stage writes for one policy (gathered by its merge rule)."""
    return [f"data/shards/{stage}/{policy}/{i}-of-{NSHARDS}.jsonl" for i in SHARDS]


def fresh_draw_files():
    """Fresh-draw files the analysis reads: the built columnar copies, or the JSONL / Parquet
    files found in analysis-only mode."""
    if ANALYSIS_ONLY:
        return sorted(glob.glob(os.path.join(FRESH_DRAWS_DIR, "*_responses.jsonl"))
                      + glob.glob(os.path.join(FRESH_DRAWS_DIR, "*_responses.parquet")))
    return [COLUMNAR_FRESH_DRAWS.format(policy=p) for p in TARGETS]


def check_analysis_wildcards(wildcards, seed):
    """Fail at DAG-build time for a typed target with an unknown estimator, a coverage
    not spelled canonically or outside (0, 1], or too few calibration labels."""
    if wildcards.estimator not in ESTIMATORS:
        fail("analysis.estimators", f"unknown estimator '{wildcards.estimator}' in target "
             f"path (known: {', '.join(ESTIMATORS)})")
    coverage = parse_coverage_wildcard(wildcards.coverage)
    check_calibration_labels(coverage, seed, "analysis.oracle_coverages")


def analysis_inputs(wildcards):
    """Inputs of one analysis job: the logged dataset and the fresh draws (the columnar copies
    rule dataset writes; the user's JSONL or Parquet files in analysis-only mode)."""
    seed = int(wildcards.seed) if hasattr(wildcards, "seed") else ANALYSIS["seeds"][0]
    check_analysis_wildcards(wildcards, seed)
    if ANALYSIS_ONLY:  # existing files outside the workflow: never staged to remote storage
        return {"dataset": local(DATASET), "fresh_draws": [local(f) for f in fresh_draw_files()]}
    return {"dataset": COLUMNAR_DATASET, "fresh_draws": fresh_draw_files()}


def result_dir(estimator, coverage, seed=None):
    """Where one analysis writes: results/{estimator}/coverage_{c}[/seed_{s}]."""
    path = f"results/{estimator}/coverage_{coverage_label(coverage)}"
    return path if seed is None else f"{path}/seed_{seed}"


def analysis_targets():
    """estimates.json of the configured grid: estimators x coverages x seeds.

    The first seed is the main result (results/{e}/coverage_{c}/estimates.json);
    further seeds are replicates under results/{e}/coverage_{c}/seed_{s}/.
    """
    seeds = ANALYSIS["seeds"]
    targets = []
    for estimator in ANALYSIS["estimators"]:
        for coverage in ANALYSIS["oracle_coverages"]:
            targets.append(f"{result_dir(estimator, coverage)}/estimates.json")
            targets += [f"{result_dir(estimator, coverage, s)}/estimates.json" for s in seeds[1:]]
    return targets


def plot_targets():
    """plots/ folders of the configured grid when analysis.plots is on (so switching
    plots on reruns the analyses that lack them)."""
    if not ANALYSIS["plots"]:
        return []
    return [t.replace("estimates.json", "plots") for t in analysis_targets()]


def summary_inputs(wildcards):
    """Inputs of the summary: the grid's estimates.json, plus results/cost.json when LLM stages ran."""
    inputs = {"estimates": analysis_targets()}
    if not ANALYSIS_ONLY:  # analysis-only runs make no API calls: nothing to cost
        inputs["cost"] = "results/cost.json"
    return inputs


def all_targets():
    """Targets of the default target (all): the analysis grid, its plots, the summary."""
    return [*analysis_targets(), *plot_targets(), "results/summary.csv", "results/summary.html"]


# --- input functions and outputs of the stage rules --------------------------

def prompt_source_input(wildcards):
    """The prompt source as an input when it is a local file (edits rerun the stage)."""
    source = config["prompts"]["source"]
    return [local(source)] if os.path.isfile(source) else []


def rubric_input(role):
    """{rubric: file} of the judge/oracle when it names a rubric file (an input: edits rerun it)."""
    rubric = config[role].get("rubric_file")
    return {"rubric": local(rubric)} if rubric else {}


def analysis_outputs(prefix):
    """Declared outputs of an analysis job under ``prefix`` (estimates, table, plot data, plots)."""
    outputs = {
        "estimates": f"{prefix}/estimates.json",
        "table": report(
            f"{prefix}/estimates.csv",
            caption="../report/estimates.rst",
            category="Estimates",
            subcategory="{estimator}",
            labels={"estimator": "{estimator}", "oracle coverage": "{coverage}"},
        ),
        "plot_data": f"{prefix}/plot_data.npz",
    }
    if config["analysis"]["plots"]:
        outputs["plots"] = report(
            directory(f"{prefix}/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Plots",
            subcategory="{estimator}",
            labels={"estimator": "{estimator}", "oracle coverage": "{coverage}", "plot": "{name}"},
        )
    return outputs
