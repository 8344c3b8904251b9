"""Issue 19, item 5: the smaller edges, each a one-line error with exit code 2, run as a user runs them.

Every case goes through the real command: ``python -m cje`` in a fresh process
(``llm_hardlib.run_subprocess``), or ``snakemake -n`` for a workflow config; an LLM stage
that must work talks to the fault server on 127.0.0.1. Each case also checks the other
direction (the valid input still works), so no test passes by refusing everything.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest
import yaml
from hardlib import rows, write_jsonl
from llm_hardlib import (
    REPO,
    FaultServer,
    config,
    one_error,
    run_subprocess,
    write_config,
    write_prompts,
)

import cje
from cje.errors import InputError

ARENA_YAML = REPO / "config" / "arena.yaml"


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def _error(result: subprocess.CompletedProcess, command: str) -> str:
    """Exit 2, no traceback, one ``cje <command>: error:`` line: return it without the prefix."""
    return one_error(result.returncode, result.stderr, command)


def _analyze(tmp_path, data, *extra, estimator="raw-ips", out=None):
    return run_subprocess(["analyze", "--data", data, "--estimator", estimator, "--output-dir",
                           out or tmp_path / "out", *extra], cwd=tmp_path)


# --- --draws-per-prompt --------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1"])
def test_draws_per_prompt_below_one_is_an_error_naming_the_flag(tmp_path, value):
    cfg = write_config(tmp_path / "config.yaml", config("http://127.0.0.1:9/v1"))
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    result = run_subprocess(["generate", "--config", cfg, "--policy", "tf", "--prompts", prompts,
                             "--output", tmp_path / "tf.jsonl", f"--draws-per-prompt={value}"], cwd=tmp_path)
    assert _error(result, "generate") == f"option --draws-per-prompt: must be an integer >= 1, got {value}"
    assert not (tmp_path / "tf.jsonl").exists()


def test_draws_per_prompt_from_the_config_is_named_by_its_key(tmp_path):
    cfg = config("http://127.0.0.1:9/v1")
    cfg["fresh_draws"] = {"draws_per_prompt": 0}
    path = write_config(tmp_path / "config.yaml", cfg)
    result = run_subprocess(["generate", "--config", path, "--policy", "tf", "--prompts",
                             write_prompts(tmp_path / "prompts.jsonl", 3), "--output", tmp_path / "tf.jsonl"],
                            cwd=tmp_path)
    assert _error(result, "generate") == "config key 'fresh_draws.draws_per_prompt': must be an integer >= 1, got 0"


def test_a_valid_draws_per_prompt_draws_that_many(tmp_path):
    with FaultServer() as srv:
        cfg = write_config(tmp_path / "config.yaml", config(srv.url))
        result = run_subprocess(["generate", "--config", cfg, "--policy", "tf", "--prompts",
                                 write_prompts(tmp_path / "prompts.jsonl", 3), "--output", tmp_path / "tf.jsonl",
                                 "--draws-per-prompt", "2", "--request-cache", tmp_path / "cache",
                                 "--api-log", tmp_path / "api.log"], cwd=tmp_path)
    _ok(result)
    drawn = [json.loads(line) for line in (tmp_path / "tf.jsonl").read_text().splitlines()]
    assert sorted((r["prompt_id"], r["draw_idx"]) for r in drawn) == [(f"q00{i}", d) for i in range(3) for d in (0, 1)]


# --- cje cost --estimate: the workflow's strict schema, and what is unpriced ---------------------

def _arena(tmp_path, edit=None, name="arena.yaml"):
    cfg = yaml.safe_load(ARENA_YAML.read_text())
    if edit:
        edit(cfg)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_cost_estimate_refuses_a_wrongly_typed_value_naming_the_key(tmp_path):
    path = _arena(tmp_path, lambda c: c["oracle"].update(n_rubric_samples="three"))
    line = _error(run_subprocess(["cost", "--estimate", "--config", path], cwd=tmp_path), "cost")
    assert line == f"invalid workflow config {path}: config key 'oracle.n_rubric_samples': 'three' is not of type 'integer'"


def test_cost_estimate_refuses_a_top_level_typo_the_workflow_refuses(tmp_path):
    path = _arena(tmp_path, lambda c: c.update(fresh_draw=c.pop("fresh_draws")))
    line = _error(run_subprocess(["cost", "--estimate", "--config", path], cwd=tmp_path), "cost")
    assert line.startswith(f"invalid workflow config {path}: config key 'fresh_draw': unknown key "
                           "(did you mean 'fresh_draws'?")
    # the workflow refuses the same file with the same words
    dry = subprocess.run([shutil.which("snakemake", path=os.path.dirname(sys.executable)) or "snakemake", "-n",
                          "--cores", "1", "--configfile", str(path)], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=False)
    assert dry.returncode == 2, dry.stderr
    assert "config key 'fresh_draw': unknown key (did you mean 'fresh_draws'?" in dry.stderr


def test_the_package_checks_with_the_workflows_own_schema_file():
    from cje.llm.config_schema import SCHEMA_PATH

    assert SCHEMA_PATH.resolve() == (REPO / "schemas" / "config.schema.yaml").resolve()


def test_cost_headline_names_the_unpriced_judge_and_oracle(tmp_path):
    out = _ok(run_subprocess(["cost", "--estimate", "--config", _arena(tmp_path), "--prompt-tokens", "100"],
                             cwd=tmp_path))
    cfg = yaml.safe_load(ARENA_YAML.read_text())
    total = next(line for line in out.splitlines() if line.startswith("total: "))
    assert total.endswith(f" + unpriced: judge (model {cfg['judge']['model']}), "
                          f"oracle (model {cfg['oracle']['model']})"), total
    assert total.startswith("total: 17,500 calls, <= $")
    judge_row = next(line for line in out.splitlines() if line.startswith("judge "))
    assert judge_row.endswith("unpriced")


def test_cost_headline_with_every_provider_priced_names_nothing_unpriced(tmp_path):
    def price(cfg):
        cfg["providers"]["openai"].update(cost_per_million_input_tokens=1.0, cost_per_million_output_tokens=2.0)
    out = _ok(run_subprocess(["cost", "--estimate", "--config", _arena(tmp_path, price), "--prompt-tokens", "100"],
                             cwd=tmp_path))
    total = next(line for line in out.splitlines() if line.startswith("total: "))
    assert "unpriced" not in out and total.startswith("total: 17,500 calls, <= $")


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--n-prompts", "0", "must be an integer >= 1, got 0"),
    ("--prompt-tokens", "-5", "must be a number > 0, got -5.0"),
])
def test_cost_estimate_flags_below_range_are_named(tmp_path, flag, value, message):
    line = _error(run_subprocess(["cost", "--estimate", "--config", _arena(tmp_path), flag, value], cwd=tmp_path),
                  "cost")
    assert line == f"option {flag}: {message}"


# --- a file-size limit --------------------------------------------------------------------------

def _limited(limit: int):
    def set_limit():  # in the child: the limit, and SIGXFSZ at its default (it kills the process)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    return set_limit


def _analyze_limited(tmp_path, limit):
    data = write_jsonl(tmp_path / "logged.jsonl", rows())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cje", "analyze", "--data", str(data), "--estimator", "raw-ips",
                           "--output-dir", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False, preexec_fn=_limited(limit))


def test_an_output_past_the_file_size_limit_is_one_line_naming_the_file(tmp_path):
    result = _analyze_limited(tmp_path, 4096)
    line = _error(result, "analyze")
    assert line == (f"{tmp_path / 'out' / 'estimates.json'}: cannot write: the file would exceed the file-size "
                    "limit of this process (ulimit -f: 4,096 bytes); raise the limit (ulimit -f unlimited) or "
                    "write less")
    assert sorted(os.listdir(tmp_path / "out")) == []  # nothing half-written is left


def test_under_a_generous_file_size_limit_the_analysis_is_published(tmp_path):
    _ok(_analyze_limited(tmp_path, 64 * 1024 * 1024))
    assert (tmp_path / "out" / "estimates.json").is_file()


# --- dangling symlinks are called what they are -------------------------------------------------

def test_an_output_under_a_dangling_symlink_is_named_as_one(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    shards = write_jsonl(tmp_path / "shard.jsonl", [{"prompt_id": "a", "draw_idx": 0, "status": "ok"}])
    line = _error(run_subprocess(["merge", "--inputs", shards, "--output", tmp_path / "link" / "x.jsonl"],
                                 cwd=tmp_path), "merge")
    assert line == (f"{tmp_path / 'link' / 'x.jsonl'}: cannot be written: {tmp_path / 'link'} is a dangling "
                    f"symlink to {tmp_path / 'gone'}, not a folder: create the folder it points to or remove the link")
    (tmp_path / "gone").mkdir()  # the other direction: once the link resolves, the merge writes through it
    _ok(run_subprocess(["merge", "--inputs", shards, "--output", tmp_path / "link" / "x.jsonl"], cwd=tmp_path))
    assert (tmp_path / "gone" / "x.jsonl").is_file()


def test_a_dangling_fresh_draws_folder_is_named_as_one(tmp_path):
    data = write_jsonl(tmp_path / "logged.jsonl", rows())
    (tmp_path / "fresh").symlink_to(tmp_path / "gone")
    line = _error(_analyze(tmp_path, data, "--fresh-draws-dir", tmp_path / "fresh", estimator="direct"), "analyze")
    assert line == (f"{tmp_path / 'fresh'}: fresh-draws folder is a dangling symlink to {tmp_path / 'gone'}, "
                    "not a folder")


# --- JSON errors read once -----------------------------------------------------------------------

def test_an_unterminated_string_is_reported_without_a_doubled_word(tmp_path):
    data = write_jsonl(tmp_path / "logged.jsonl", rows(), raw_lines={2: '{"prompt_id": "p2", "prompt": "abc'})
    line = _error(_analyze(tmp_path, data), "analyze")
    column = len('{"prompt_id": "p2", "prompt": ') + 1  # where the string starts
    assert line == f"{data}:3: malformed JSON (Unterminated string starting at column {column})"


def test_load_result_of_a_csv_is_an_input_error_naming_it(tmp_path):
    data = write_jsonl(tmp_path / "logged.jsonl", rows())
    _ok(_analyze(tmp_path, data))
    assert cje.load_result(tmp_path / "out").analysis.estimator == "raw-ips"  # the json reads
    with pytest.raises(InputError) as info:
        cje.load_result(tmp_path / "out" / "estimates.csv")
    assert str(info.value).startswith(f"{tmp_path / 'out' / 'estimates.csv'}: not an estimates.json: malformed JSON (")


# --- policy names -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["base", "--help", "-x"])
def test_a_target_named_base_or_like_a_flag_is_refused_in_logged_data(tmp_path, name):
    logged = rows()
    for r in logged:
        r["target_policy_logprobs"][name] = r["target_policy_logprobs"].pop("b")
    data = write_jsonl(tmp_path / "logged.jsonl", logged)
    line = _error(_analyze(tmp_path, data), "analyze")
    assert line.startswith(f"{data}:1, field 'target_policy_logprobs': policy name {name!r} is ")
    assert ("reserved for the base (logging) policy" in line) == (name == "base")


def test_a_workflow_target_named_base_is_refused_when_the_dag_is_built(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["base_policy"] = "logging"
    cfg["policies"]["logging"] = cfg["policies"].pop("base")
    cfg["policies"]["base"] = dict(cfg["policies"]["logging"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    snakemake = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or "snakemake"
    dry = subprocess.run([snakemake, "-n", "--cores", "1", "--configfile", str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300, check=False)
    assert dry.returncode == 2, dry.stderr
    assert ("invalid workflow config: config key 'policies.base': target policy name 'base' is reserved for the "
            "base (logging) policy") in dry.stderr
    assert "Traceback" not in dry.stderr
    # and the LLM command refuses it too, naming the config key
    result = run_subprocess(["generate", "--config", path, "--policy", "base", "--prompts",
                             write_prompts(tmp_path / "p.jsonl", 2), "--output", tmp_path / "o.jsonl"], cwd=tmp_path)
    assert _error(result, "generate").startswith("target policy name (config key 'policies') 'base' is reserved")


def test_a_policy_named_like_a_flag_is_refused_by_the_llm_commands(tmp_path):
    cfg = config("http://127.0.0.1:9/v1")
    cfg["policies"]["-x"] = cfg["policies"].pop("tf")
    path = write_config(tmp_path / "config.yaml", cfg)
    result = run_subprocess(["generate", "--config", path, "--policy=-x", "--prompts",
                             write_prompts(tmp_path / "p.jsonl", 2), "--output", tmp_path / "o.jsonl"], cwd=tmp_path)
    assert _error(result, "generate").startswith("target policy name (config key 'policies') '-x' is not allowed")


# --- flags are called flags -----------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "expected"), [
    (["--estimator", "magic-ips"], "option --estimator (estimator): unknown estimator 'magic-ips'"),
    (["--estimator", "direct"], "option --fresh-draws-dir (fresh_draws_dir): estimator 'direct' needs fresh draws"),
    (["--oracle-coverage", "1.5"], "option --oracle-coverage (oracle_coverage): "),
])
def test_analyze_names_the_flag_it_got_the_value_from(tmp_path, argv, expected):
    data = write_jsonl(tmp_path / "logged.jsonl", rows())
    result = run_subprocess(["analyze", "--data", data, "--output-dir", tmp_path / "out",
                             *(["--estimator", "raw-ips"] if "--estimator" not in argv else []), *argv], cwd=tmp_path)
    line = _error(result, "analyze")
    assert line.startswith(expected) and "config key" not in line


@pytest.mark.parametrize(("argv", "expected"), [
    (["--half-width", "0.05", "--power", "1.5"], "option --power (power): power must be in (0, 1), got 1.5"),
    (["--half-width", "-1"], "option --half-width (half_width): target half-width must be > 0, got -1.0"),
    (["--half-width", "0.05", "--policy", "nope"], "option --policy (policy): unknown policy 'nope'"),
    (["--compare", "a", "b"], "option --margin (margin): separating policies needs a margin > 0"),
    (["--half-width", "0.05", "--compare", "a", "b"], "option --compare: give --half-width or --compare, not both"),
])
def test_plan_names_the_flag_it_got_the_value_from(tmp_path, argv, expected):
    data = write_jsonl(tmp_path / "logged.jsonl", rows())
    _ok(_analyze(tmp_path, data))
    line = _error(run_subprocess(["plan", "--pilot", tmp_path / "out", *argv], cwd=tmp_path), "plan")
    assert line.startswith(expected) and "config key" not in line


def test_llm_commands_name_their_flags(tmp_path):
    line = _error(run_subprocess(["merge", "--inputs", tmp_path / "a.jsonl", "--output", tmp_path / "o.jsonl"],
                                 cwd=tmp_path), "merge")
    assert "config key" not in line
    result = run_subprocess(["prompts", "--config", write_config(tmp_path / "c.yaml", config("http://127.0.0.1:9/v1")),
                             "--output", tmp_path / "p.jsonl", "--n-samples", "0",
                             "--source", write_prompts(tmp_path / "src.jsonl", 3)], cwd=tmp_path)
    assert _error(result, "prompts") == "option --n-samples: must be an integer >= 1, got 0"


# --- cje plan: the pilot's status, CRITICAL refused, probes filled ----------------------------------

@pytest.fixture(scope="module")
def pilots(arena_logged, arena_fresh, tmp_path_factory):
    """Two pilots of the arena sample: raw-ips (every target CRITICAL: overlap fails) and direct with
    probe labels (GOOD and WARNING), every pair compared (the plan of a pair of targets reads it)."""
    root = tmp_path_factory.mktemp("pilots")
    for estimator, extra in (("raw-ips", []), ("direct", ["--probe-coverage", "0.5", "--comparisons", "all"])):
        _ok(run_subprocess(["analyze", "--data", arena_logged, "--fresh-draws-dir", arena_fresh, "--estimator",
                            estimator, "--oracle-coverage", "0.25", "--seed", "0", *extra, "--output-dir",
                            root / estimator], cwd=root))
    return root


def _table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("target "))
    body = []
    for line in lines[head + 1:]:
        if not line.strip():
            break
        body.append(line)
    return {line[:34].strip(): line[34:].split() for line in body}


def test_plan_refuses_a_critical_pilot_naming_the_policy_and_why(pilots):
    line = _error(run_subprocess(["plan", "--pilot", pilots / "raw-ips", "--half-width", "0.03", "--policy",
                                  "unhelpful"], cwd=pilots), "plan")
    assert line.startswith(f"{pilots / 'raw-ips' / 'estimates.json'}: the pilot estimate of unhelpful is CRITICAL (")
    assert line.endswith("or pass --allow-critical to plan anyway")


def test_plan_with_allow_critical_shows_the_status_and_warns(pilots):
    out = _ok(run_subprocess(["plan", "--pilot", pilots / "raw-ips", "--half-width", "0.03", "--allow-critical"],
                             cwd=pilots))
    table = _table_rows(out)
    assert set(table) == {"clone", "parallel_universe_prompt", "unhelpful"}
    assert all(cells[0] == "CRITICAL" for cells in table.values())
    assert all(cells[-1] in ("never", "n/a") or cells[-1].isdigit() for cells in table.values())
    assert sum(line.startswith("WARNING: the pilot estimate of ") for line in out.splitlines()) == 3


def test_plan_of_a_sound_pilot_shows_status_and_fills_the_probes_column(pilots):
    out = _ok(run_subprocess(["plan", "--pilot", pilots / "direct", "--half-width", "0.02"], cwd=pilots))
    table = _table_rows(out)
    assert {name: cells[0] for name, cells in table.items()} == {
        "clone": "GOOD", "parallel_universe_prompt": "GOOD", "unhelpful": "WARNING"}
    assert all(cells[-1].isdigit() for cells in table.values())
    assert "WARNING: the pilot" not in out
    pair = _ok(run_subprocess(["plan", "--pilot", pilots / "direct", "--compare", "clone", "base", "--compare",
                               "clone", "unhelpful", "--margin", "0.03"], cwd=pilots))
    pairs = _table_rows(pair)
    assert pairs["clone - base"][0] == "GOOD" and pairs["clone - unhelpful"][0] == "WARNING"
    # a pair's probes are its target policies' (the base needs none)
    assert int(pairs["clone - unhelpful"][-1]) > int(pairs["clone - base"][-1]) > 0
