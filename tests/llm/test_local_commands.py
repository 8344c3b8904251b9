"""``cje logprobs`` and ``cje serve-local`` as commands, on the real local model.

The logprobs stage is also run against L1's fault server (an OpenAI-compatible
server that, like hosted APIs and llama.cpp's own server, does not score at the
request's temperature) to check the refusal and the max_tokens=1 echo trap.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest
import yaml

from cje.cli import main
from cje.llm.local.server import local_server
from cje.llm.templates import end_of_turn, render_prompt

pytestmark = pytest.mark.llm
SYSTEM = "You are a helpful assistant."
PROMPTS = {"q1": "What is the capital of France?", "q2": "Name a fruit.", "q3": "Count to three."}


def _policy(provider: str, **kw) -> dict:
    return {"provider": provider, "model": "gemma-3-270m", "chat_template": "gemma",
            "system_prompt": SYSTEM, "temperature": 1.0, "max_tokens": 16, **kw}


def _config(tmp_path: Path, providers: dict, policies: dict, **execution) -> Path:
    cfg = {"providers": providers, "base_policy": "base", "policies": policies,
           "execution": {"shards": 1, "batch_size": 2, **execution}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def base_responses(tmp_path_factory) -> Path:
    """Three responses sampled from the real model (one cut by max_tokens) + a failed one."""
    path = tmp_path_factory.mktemp("responses") / "base.jsonl"
    rows = []
    with local_server(n_threads=1) as url:
        client = openai.OpenAI(base_url=url, api_key="not-needed")
        for i, (pid, prompt) in enumerate(PROMPTS.items()):
            resp = client.completions.create(
                model="gemma-3-270m", prompt=render_prompt("gemma", SYSTEM, prompt), max_tokens=16,
                temperature=1.0, seed=i, stop=[end_of_turn("gemma")])
            choice = resp.choices[0]
            rows.append({"prompt_id": pid, "prompt": prompt, "policy": "base", "draw_idx": 0,
                         "response": choice.text, "status": "ok", "error": None,
                         "usage": {"prompt_tokens": resp.usage.prompt_tokens,
                                   "completion_tokens": resp.usage.completion_tokens}})
            if i < 2:  # rows of a generate stage that stores finish_reason and the token path
                rows[-1].update(finish_reason=choice.finish_reason, token_ids=choice.model_extra["token_ids"])
    rows.append({"prompt_id": "q4", "prompt": "Broken.", "policy": "base", "draw_idx": 0,
                 "response": None, "status": "error", "error": "HTTP 500: upstream failed"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _calls(api_log: Path) -> int:
    if not api_log.exists():
        return 0
    records = [json.loads(line) for line in api_log.read_text().splitlines()]
    return sum(r.get("stage", "").startswith("logprobs") and "event" not in r for r in records)


def test_logprobs_stage_scores_resumes_and_shards(tmp_path, base_responses):
    config = _config(tmp_path, {"local": {"kind": "local", "n_threads": 1, "max_concurrency": 1}},
                     {"base": _policy("local"), "cool": _policy("local", temperature=0.5),
                      "hosted": _policy("local", chat_template="none")})
    out, api_log = tmp_path / "logprobs", tmp_path / "api_calls.log"
    argv = ["logprobs", "--config", str(config), "--responses", str(base_responses),
            "--policies", "base,cool,hosted", "--output-dir", str(out), "--api-log", str(api_log)]
    assert main(argv) == 0
    base, cool, hosted = (_read(out / f"{p}.jsonl") for p in ("base", "cool", "hosted"))
    assert [r["prompt_id"] for r in base] == ["q1", "q2", "q3", "q4"]
    for rows, temperature in ((base, 1.0), (cool, 0.5)):
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) == 3 and all(r["method"] == "offsets" for r in ok)
        assert all(r["logprob"] < 0 and r["n_tokens"] > 0 and r["logprob_temperature"] == temperature for r in ok)
        assert [r["token_path"] for r in ok] == ["sampled", "sampled", "canonical"]
        src = _read(base_responses)
        # cut by max_tokens (finish_reason, or usage reaching max_tokens=16): no end-of-turn scored
        assert [r["end_of_turn_scored"] for r in ok] == [
            src[0]["finish_reason"] == "stop", src[1]["finish_reason"] == "stop",
            src[2]["usage"]["completion_tokens"] < 16]
        assert False in [r["end_of_turn_scored"] for r in ok]  # 16 tokens: the base model rambles on
        assert [r["n_tokens"] for r in ok[:2]] == [
            len(s["token_ids"]) + (s["finish_reason"] == "stop") for s in src[:2]]
        failed = rows[3]
        assert failed["status"] == "error" and failed["logprob"] is None and "upstream failed" in failed["error"]
    assert all(abs(b["logprob"] - c["logprob"]) > 0.5 for b, c in zip(base[:3], cool[:3]))
    assert all(r["status"] == "error" and r["logprob"] is None for r in hosted)
    assert "chat_template 'none'" in hosted[0]["error"]
    assert _calls(api_log) == 6  # 3 rows x 2 scorable policies, one call each (offsets)

    # rerun: nothing is requested again, outputs are identical
    before = {p: (out / f"{p}.jsonl").read_bytes() for p in ("base", "cool")}
    assert main(argv) == 0
    assert _calls(api_log) == 6
    assert before == {p: (out / f"{p}.jsonl").read_bytes() for p in ("base", "cool")}

    # a changed response is rescored (and only it)
    rows = _read(base_responses)
    rows[1]["response"] = "A banana."
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv_changed = argv.copy()
    argv_changed[argv.index("--responses") + 1] = str(changed)
    argv_changed[argv.index("--policies") + 1] = "base"
    assert main(argv_changed) == 0
    assert _calls(api_log) == 7
    rescored = _read(out / "base.jsonl")
    assert rescored[0] == base[0] and rescored[2] == base[2] and rescored[1]["logprob"] != base[1]["logprob"]

    # two shards partition the rows
    ids = []
    for shard in (0, 1):
        d = tmp_path / f"shard{shard}"
        assert main(["logprobs", "--config", str(config), "--responses", str(base_responses),
                     "--policies", "base", "--output-dir", str(d), "--api-log", str(api_log),
                     "--shard", str(shard), "--num-shards", "2"]) == 0
        ids.append({r["prompt_id"] for r in _read(d / "base.jsonl")})
    assert ids[0] | ids[1] == {"q1", "q2", "q3", "q4"} and not ids[0] & ids[1]
    sharded = {r["prompt_id"]: r for s in (0, 1) for r in _read(tmp_path / f"shard{s}" / "base.jsonl")}
    assert all(sharded[r["prompt_id"]]["logprob"] == r["logprob"] for r in base)


def test_logprobs_refuses_temperature_on_server_that_scores_at_one(tmp_path, base_responses,
                                                                   fault_server, fake_key, capsys):
    """An OpenAI-style server (no ``cje.logprob_temperature``): T=1 is scored (its fake
    tokens do not spell the text, so via two calls, dropping the generated token of
    max_tokens=1), T != 1 is refused, never silently scored at T=1: the preflight's probe
    at T = 0.7 finds it and the stage stops (exit 2) naming the reason before any row."""
    provider = {"kind": "openai", "base_url": fault_server.url, "api_key_env": "CJE_TEST_API_KEY",
                "max_concurrency": 2, "max_retries": 1, "retry_backoff_s": 0.01}
    policies = {"base": _policy("fault"), "cool": _policy("fault", temperature=0.7)}
    out = tmp_path / "out"
    argv = ["logprobs", "--responses", str(base_responses), "--policies", "base,cool",
            "--output-dir", str(out), "--api-log", str(tmp_path / "api.log")]
    assert main([*argv, "--config", str(_config(tmp_path, {"fault": provider}, policies))]) == 2
    err = capsys.readouterr().err
    # the preflight finds it with one probe per temperature, before any row is sent
    assert "cje logprobs: error: provider 'fault'" in err and "cannot do prompt log-probs" in err
    assert "needed by logprobs (policy 'cool')" in err and "refusing to mix temperatures" in err
    assert not out.exists() and fault_server.rows_total() == 0
    assert fault_server.preflight_total() == 2  # T = 1 (passes) and T = 0.7 (fails)
    base_only = [a if a != "base,cool" else "base" for a in argv]
    assert main([*base_only, "--config", str(_config(tmp_path, {"fault": provider}, policies))]) == 0
    base = _read(out / "base.jsonl")
    assert [r["status"] for r in base] == ["ok", "ok", "ok", "error"]
    assert all(r["method"] == "two_call" and r["fallback_reason"] and r["logprob"] < 0 for r in base[:3])
    assert fake_key not in (tmp_path / "api.log").read_text()


def test_logprobs_killed_mid_stage_resumes_without_loss_or_repeats(tmp_path, fake_key):
    """SIGKILL the stage mid-way (fault server, 4 calls in flight, 100 ms per call), rerun:
    every row once, and no request answered before the kill (an entry of the request
    cache) is sent again."""
    from fault_server import FaultServer
    from cje.llm.client.cache import RequestCache

    n = 40
    responses = tmp_path / "base.jsonl"
    responses.write_text("".join(json.dumps({
        "prompt_id": f"k{i:02d}", "prompt": f"question {i}", "policy": "base", "draw_idx": 0,
        "response": f"answer number {i}", "status": "ok", "error": None}) + "\n" for i in range(n)))
    with FaultServer(latency_s=0.1) as srv:
        provider = {"kind": "openai", "base_url": srv.url, "api_key_env": "CJE_TEST_API_KEY",
                    "max_concurrency": 4, "max_retries": 1, "retry_backoff_s": 0.01}
        config = _config(tmp_path, {"fault": provider}, {"base": _policy("fault")})
        out = tmp_path / "out"
        cache = tmp_path / "requests"
        argv = ["logprobs", "--config", str(config), "--responses", str(responses), "--policies", "base",
                "--output-dir", str(out), "--request-cache", str(cache),
                "--api-log", str(tmp_path / "api.log")]

        def answered() -> set[str]:  # request texts answered (the fault server echoes text + "  ok")
            return {e["response"]["choices"][0]["text"][:-len("  ok")]
                    for e in RequestCache(cache).entries()}

        proc = subprocess.Popen([sys.executable, "-m", "cje", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(answered()) < 20:
                time.sleep(0.02)
            proc.kill()
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        done_at_kill = answered()
        assert 20 <= len(done_at_kill) < 2 * n
        assert not (out / "base.jsonl").exists()
        before = srv.counts()
        assert main(argv) == 0
        rows = _read(out / "base.jsonl")
        assert [r["prompt_id"] for r in rows] == [f"k{i:02d}" for i in range(n)]
        assert all(r["status"] == "ok" for r in rows)
        after = srv.counts()
        for i in range(n):
            prompt = render_prompt("gemma", SYSTEM, f"question {i}")
            for text in (prompt, prompt + f"answer number {i}" + end_of_turn("gemma")):
                repeated = after.get(text, 0) - before.get(text, 0)
                assert repeated == (0 if text in done_at_kill else 1), (i, repeated)


def test_serve_local_command_serves_until_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "cje", "serve-local", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(url[: -len("/v1")] + "/health", timeout=5) as resp:
            pid = json.loads(resp.read())["pid"]
        client = openai.OpenAI(base_url=url, api_key="not-needed")
        assert client.completions.create(model="gemma-3-270m", prompt="Hi", max_tokens=2, seed=0).choices
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    finally:
        if proc.poll() is None:
            proc.kill()
