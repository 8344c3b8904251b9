# Names, target lists and the code-hash params shared by every rule file.
# Included by the Snakefile after the config was checked and its defaults filled.

import glob
import hashlib
import json
import os
from pathlib import Path

import yaml


# --- code-hash params -------------------------------------------------------
# Snakemake does not track code inside the imported `cje` package. Each rule gets
# a params value hashing the source files it uses, so a real edit reruns exactly
# the affected rules and a bare `touch` does not.
CODE_GROUPS = {
    # LLM stages: client, stages, local server, templates.
    "llm": {"include": ["cje/llm/**/*.py", "cje/errors.py"], "exclude": []},
    # analysis + plots + summary: the whole package except the LLM stages.
    "analysis": {"include": ["cje/**/*.py", "cje/schemas/*.json"], "exclude": ["cje/llm/"]},
}
_CODE_HASHES = {}


def code_hash(group):
    """sha256 (16 hex) over the relative paths and contents of a code group's files."""
    if group not in _CODE_HASHES:
        base = Path(workflow.basedir)
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


def coverage_label(value):
    """Directory label of an oracle coverage: 0.05 -> '0.05', 1.0 -> '1'."""
    return f"{float(value):g}"


def policy_spec(policy):
    """Everything that defines a policy's outputs: its config entry and its provider's model."""
    spec = dict(config["policies"][policy])
    provider = config["providers"][spec["provider"]]
    spec["_provider"] = {k: provider.get(k) for k in ("kind", "base_url", "model_package")}
    return spec_json(spec)


def scorer_spec(role, policy):
    """Judge/oracle spec for one policy's rows (the oracle coverage depends on the role of the policy)."""
    spec = dict(config[role])
    provider = config["providers"][spec["provider"]]
    spec["_provider"] = {k: provider.get(k) for k in ("kind", "base_url", "model_package")}
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


def shard_files(stage, policy):
    """The per-shard outputs one stage writes for one policy (gathered by its merge rule)."""
    return [f"data/shards/{stage}/{policy}/{i}-of-{NSHARDS}.jsonl" for i in SHARDS]


def fresh_draw_files():
    """Fresh-draw files the analysis reads: built ones, or those found in analysis-only mode."""
    if ANALYSIS_ONLY:
        return sorted(glob.glob(os.path.join(FRESH_DRAWS_DIR, "*_responses.jsonl")))
    return [f"data/fresh_draws/{p}_responses.jsonl" for p in TARGETS]


def check_analysis_wildcards(wildcards):
    """Fail at DAG-build time for a typed target with an unknown estimator or a bad coverage."""
    if wildcards.estimator not in ESTIMATORS:
        fail("analysis.estimators", f"unknown estimator '{wildcards.estimator}' in target "
             f"path (known: {', '.join(ESTIMATORS)})")
    coverage = float(wildcards.coverage)
    if not 0 < coverage <= 1:
        fail("analysis.oracle_coverages", f"oracle coverage {wildcards.coverage} in target "
             "path is outside (0, 1]")


def analysis_inputs(wildcards):
    """Inputs of one analysis job: the logged dataset and the fresh draws."""
    check_analysis_wildcards(wildcards)
    if ANALYSIS_ONLY:  # existing files outside the workflow: never staged to remote storage
        return {"dataset": local(DATASET), "fresh_draws": [local(f) for f in fresh_draw_files()]}
    return {"dataset": DATASET, "fresh_draws": fresh_draw_files()}


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


def all_targets():
    """Targets of the default target (all): the analysis grid and the sweep summary."""
    return [*analysis_targets(), "results/summary.csv", "results/summary.html"]


# --- input functions and outputs of the stage rules --------------------------

def prompt_source_input(wildcards):
    """The prompt source as an input when it is a local file (edits rerun the stage)."""
    source = config["prompts"]["source"]
    return [local(source)] if os.path.isfile(source) else []


def generate_input(wildcards):
    """Inputs of one generate shard; fails early if the policy's API key is missing."""
    require_provider_key(config["policies"][wildcards.policy]["provider"],
                         f"policies.{wildcards.policy}")
    return {"prompts": "data/prompts.jsonl"}


def logprobs_input(wildcards):
    """Inputs of one log-prob shard; fails early if the policy's API key is missing."""
    require_provider_key(config["policies"][wildcards.policy]["provider"],
                         f"policies.{wildcards.policy}")
    return {"responses": f"data/responses/{BASE}.jsonl"}


def judge_input(wildcards):
    """Inputs of one judge shard (+ the rubric file); fails early if the judge's key is missing."""
    require_provider_key(config["judge"]["provider"], "judge")
    inputs = {"responses": f"data/responses/{wildcards.policy}.jsonl"}
    if config["judge"].get("rubric_file"):
        inputs["rubric"] = local(config["judge"]["rubric_file"])
    return inputs


def oracle_input(wildcards):
    """Inputs of one oracle shard (+ the rubric file); fails early if the oracle's key is missing."""
    require_provider_key(config["oracle"]["provider"], "oracle")
    inputs = {"responses": f"data/responses/{wildcards.policy}.jsonl"}
    if config["oracle"].get("rubric_file"):
        inputs["rubric"] = local(config["oracle"]["rubric_file"])
    return inputs


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

