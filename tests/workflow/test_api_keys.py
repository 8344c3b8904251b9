"""The API-key check runs only for jobs that will actually run (the Snakefile's
``onstart``), not when the DAG is built: a finished hosted run can be inspected
without keys, and a run that would call the API stops before any job starts.

The hosted provider is a local fake OpenAI-compatible server (tests/servers).
"""

from __future__ import annotations

from .wfutil import (FAKE_KEY_ENV, api_config, key_env, load_yaml, planned_jobs, run_snakemake,
                     write_config, write_prompts)


def test_finished_hosted_run_needs_no_key_until_a_job_must_run(workflow_dir, fake_api):
    write_prompts(workflow_dir / "prompts.jsonl", 20)
    write_config(workflow_dir, "api.yaml", api_config(fake_api.url))
    args = ("--configfile", "api.yaml")
    run_snakemake(workflow_dir, *args, "--cores", "2", env=key_env(True), replace_env=True)
    sent = fake_api.total()
    assert sent > 0

    no_key = key_env(False)
    assert FAKE_KEY_ENV not in no_key
    assert planned_jobs(workflow_dir, *args, env=no_key) == {}
    for inspect in (["--dag"], ["--rulegraph"], ["--summary"], ["--list-changes", "params"],
                    ["--list-changes", "code"], ["--report", "report.html"]):
        proc = run_snakemake(workflow_dir, *args, *inspect, env=no_key, replace_env=True)
        assert "api_key_env" not in proc.stdout + proc.stderr, inspect
    assert (workflow_dir / "report.html").stat().st_size > 0

    # an edit that makes an LLM job stale: a dry run plans it without the key ...
    cfg = load_yaml(workflow_dir / "api.yaml")
    cfg["policies"]["short"]["max_tokens"] = 12
    write_config(workflow_dir, "edited.yaml", cfg)
    edited = ("--configfile", "edited.yaml")
    assert planned_jobs(workflow_dir, *edited, env=no_key)["generate"] == 2
    # ... and the real run stops before the first job, naming the key
    log_lines = len((workflow_dir / "logs" / "api_calls.log").read_text().splitlines())
    proc = run_snakemake(workflow_dir, *edited, "--cores", "2", env=no_key, replace_env=True,
                         check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # every job that needs the key, sorted by rule and wildcards: the same line whatever
    # order Snakemake would have scheduled them in
    needing = [f"{rule}(policy=short, shard={shard}, nshards=2)"
               for rule in ("generate", "judge", "logprobs", "oracle") for shard in (0, 1)]
    assert (f"invalid workflow config: config key 'providers.fake.api_key_env': environment "
            f"variable {FAKE_KEY_ENV} is not set (needed by judge, oracle, policies.short: "
            f"8 jobs: {', '.join(needing)}); export {FAKE_KEY_ENV}=... before running\n") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert fake_api.total() == sent
    assert len((workflow_dir / "logs" / "api_calls.log").read_text().splitlines()) == log_lines
    assert not list((workflow_dir / ".snakemake" / "locks").glob("*"))  # the lock was released
    # --touch (marks outputs up to date, calls nothing) needs no key either
    run_snakemake(workflow_dir, *edited, "--touch", "--cores", "1", env=no_key, replace_env=True)


def test_arena_config_names_the_missing_key_before_any_job(workflow_dir):
    """The hosted Arena config without FIREWORKS_API_KEY: exit 2 naming the key, nothing built."""
    env = {k: v for k, v in key_env(False).items() if k not in ("FIREWORKS_API_KEY", "OPENAI_API_KEY")}
    env["OPENAI_API_KEY"] = "set-but-unused"
    proc = run_snakemake(workflow_dir, "--configfile", "config/arena.yaml", "--cores", "1",
                         env=env, replace_env=True, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "providers.fireworks.api_key_env" in proc.stderr and "FIREWORKS_API_KEY" in proc.stderr
    assert not (workflow_dir / "data" / "prompts.jsonl").exists()
    assert not (workflow_dir / "logs").exists()
    # the same config plans its DAG without any key (a dry run calls nothing)
    assert planned_jobs(workflow_dir, "--configfile", "config/arena.yaml", env=env)["generate"] == 5 * 8
