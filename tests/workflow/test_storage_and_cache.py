"""Storage plugins and the per-request API cache, through the whole workflow.

The hosted provider is a local fake OpenAI-compatible server (tests/servers) that
counts every request it receives, so "nothing is paid twice" is a count.

- fs storage plugin (``--default-storage-provider fs``, what profiles/kubernetes
  uses): every input and output is staged through storage, the API caches live
  under the storage prefix, and a fresh working directory (a new pod) resumes from
  them without sending a request again.
- Request cache: adding prompts sends requests for the new prompts only (counted per
  request text by the server); re-sharding or changing the fresh-draw labelling share
  sends none.
"""

from __future__ import annotations

from collections import Counter

from tests.system_packages import require_commands

from .wfutil import (api_config, key_env, load_yaml, planned_jobs, run_snakemake, write_config,
                     write_prompts)


def _run(workdir, *args):
    return run_snakemake(workdir, *args, "--cores", "2", env=key_env(True), replace_env=True)


def test_fs_storage_plugin_runs_the_workflow_and_a_new_pod_resumes(workflow_dir, fake_api, tmp_path):
    require_commands("rsync", package="rsync", why="the fs storage plugin copies with rsync")
    store = tmp_path / "store"
    store.mkdir()
    write_prompts(workflow_dir / "prompts.jsonl", 20)
    write_config(workflow_dir, "api.yaml", api_config(fake_api.url))
    storage = ("--configfile", "api.yaml", "--default-storage-provider", "fs",
               "--default-storage-prefix", str(store))
    _run(workflow_dir, *storage)
    sent = fake_api.total()
    assert sent > 0
    # every output is in storage, nothing in the working directory ...
    for path in ("data/prompts.jsonl", "data/cje_dataset.jsonl", "data/fresh_draws/short_responses.jsonl",
                 "data/logprobs/short.jsonl", "results/calibrated-ips/coverage_0.5/estimates.json",
                 "results/summary.csv", "logs/analyze/calibrated-ips/coverage_0.5.log"):
        assert (store / path).is_file(), path
    assert not (workflow_dir / "results").exists()
    assert sorted(p.name for p in (workflow_dir / "data").iterdir()) == ["default_prompts.jsonl"]
    # ... and so are the caches that must outlive a job (a pod's disk does not)
    assert any((store / "data" / "cache" / "requests").rglob("*.json"))
    assert (store / "logs" / "api_calls.log").is_file()
    assert planned_jobs(workflow_dir, *storage, env=key_env(True)) == Counter()

    # a new pod: a fresh working directory (no .snakemake, no local copies) reruns every
    # LLM job; the answers come from the request cache in storage, no request is sent
    rerun = tmp_path / "pod2"
    rerun.mkdir()
    for item in ("Snakefile", "rules", "scripts", "schemas", "config", "envs", "report", "cje",
                 "api.yaml", "prompts.jsonl"):
        src = workflow_dir / item
        (rerun / item).symlink_to(src, target_is_directory=src.is_dir())
    _run(rerun, *storage, "--forcerun", "generate", "logprobs", "judge", "oracle")
    assert fake_api.total() == sent
    assert (store / "results" / "summary.csv").is_file()


def test_adding_prompts_sends_only_the_new_requests(workflow_dir, fake_api):
    target = ("data/cje_dataset.jsonl", "--configfile", "api.yaml")
    write_prompts(workflow_dir / "prompts.jsonl", 20)
    write_config(workflow_dir, "api.yaml", api_config(fake_api.url))
    _run(workflow_dir, *target)
    first, before = fake_api.total(), fake_api.counts()

    # 10 more prompts: the LLM jobs rerun (their input changed), but only the new
    # prompts' requests reach the provider (every stage asks the same per prompt)
    write_prompts(workflow_dir / "prompts.jsonl", 30)
    _run(workflow_dir, *target)
    assert fake_api.total() - first == first // 20 * 10
    after = fake_api.counts()
    new_ids = [f"q{i:03d}" for i in range(20, 30)]
    resent = [t for t, n in after.items() if n > before.get(t, 0) and not any(i in t for i in new_ids)]
    assert not resent, resent[:3]  # no request about an old prompt was sent again
    after_prompts = fake_api.total()

    # re-sharding (new shard files: every LLM job reruns) and a smaller fresh-draw
    # labelling share (the targets' oracle reruns) send nothing
    cfg = load_yaml(workflow_dir / "api.yaml")
    cfg["execution"]["shards"] = 3
    cfg["oracle"]["fresh_draw_coverage"] = 0.5
    write_config(workflow_dir, "api.yaml", cfg)
    jobs = planned_jobs(workflow_dir, *target, env=key_env(True))
    assert jobs["generate"] == 2 * 3 and jobs["oracle"] == 2 * 3
    _run(workflow_dir, *target)
    assert fake_api.total() == after_prompts
    rows = (workflow_dir / "data" / "oracle" / "short.jsonl").read_text().splitlines()
    assert len(rows) == 30 and sum('"selected": true' in r for r in rows) == 15
