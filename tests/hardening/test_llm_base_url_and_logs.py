"""Issue 19, items 3 and 6 (noise): ``base_url`` with a query or credentials, and the log lines.

Against the fault server on 127.0.0.1 (tests/servers/fault_server.py), through the real
``cje`` command (in this process, or as a subprocess where its logging set-up matters):

- a query string in ``base_url`` (Azure's ``?api-version=...``) is kept on every request,
  joined after the endpoint's path, never in the middle of it;
- credentials in ``base_url`` are refused before the first request, without being shown;
- no log line (the HTTP stack's with ``-v``, the call log, error messages) carries a
  query value, URL credentials or the key;
- the HTTP stack's per-request lines are off unless ``cje -v``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hardlib import run_cli
from llm_hardlib import (
    KEY,
    KEY_ENV,
    REPO,
    FaultServer,
    Rule,
    api_flags,
    config,
    fragments,
    one_error,
    run_subprocess,
    write_config,
    write_prompts,
    write_responses,
)

from cje.llm.config import split_base_url
from cje.llm.scrub import redact_url
from cje.llm.stages.io import read_jsonl

QUERY_SECRET = "QsEcReT7x9Zk2Lm"


@pytest.fixture
def srv():
    with FaultServer() as server:
        yield server


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def _argv(stage: str, tmp_path, cfg, prompts) -> list:
    return [stage, "--config", cfg, "--policy", "base", "--prompts", prompts,
            "--output", tmp_path / "base.jsonl", *api_flags(tmp_path)]


# --- a query string is joined after the path, on every request ---------------------------------

@pytest.mark.parametrize("query", ["api-version=2024-06-01",
                                   f"api-version=2024-06-01&key={QUERY_SECRET}&empty="])
def test_a_query_in_base_url_is_sent_with_every_request(tmp_path, srv, key, capsys, query):
    cfg = write_config(tmp_path / "config.yaml", config(srv.url + "?" + query))
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    responses = write_responses(tmp_path / "responses.jsonl", 4)
    runs = [  # chat (generate base, judge) and completions (generate tf, logprobs tf)
        ["generate", "--config", cfg, "--policy", "base", "--prompts", prompts,
         "--output", tmp_path / "base.jsonl"],
        ["generate", "--config", cfg, "--policy", "tf", "--prompts", prompts,
         "--output", tmp_path / "tf.jsonl"],
        ["judge", "--config", cfg, "--input", responses, "--output", tmp_path / "judge.jsonl"],
        ["logprobs", "--config", cfg, "--responses", responses, "--policies", "tf",
         "--output-dir", tmp_path / "logprobs"],
    ]
    for argv in runs:
        code, _, err = run_cli([*argv, *api_flags(tmp_path)], capsys)
        assert code == 0, err
    for out in ("base.jsonl", "tf.jsonl", "judge.jsonl", "logprobs/tf.jsonl"):
        assert all(r["status"] == "ok" for r in read_jsonl(tmp_path / out)), out
    assert {e["path"] for e in srv.log} == {"/v1/chat/completions", "/v1/completions"}
    assert {e["query"] for e in srv.log} == {query}
    assert len(srv.log) >= 16


def test_a_query_in_base_url_reaches_the_simulated_hosted_provider(tmp_path, key, capsys):
    """tests/servers/provider_sim.py routes on the path without the query: a query joined into
    the path (``/v1/?api-version=...chat/completions``) would be a 404 there."""
    settings = tmp_path / "sim.json"
    settings.write_text(json.dumps({"latency_median_s": 0.01, "latency_sigma": 0.1, "tail_p": 0}))
    sim = subprocess.Popen([sys.executable, str(REPO / "tests" / "servers" / "provider_sim.py"),
                            "--settings", str(settings), "--log", str(tmp_path / "sim.jsonl")],
                           stdout=subprocess.PIPE, text=True)
    try:
        url = sim.stdout.readline().split()[1]
        assert url.startswith("http://127.0.0.1:")
        cfg = write_config(tmp_path / "config.yaml", config(url + "?api-version=2024-06-01"))
        prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
        for policy in ("base", "tf"):  # chat and completions
            code, _, err = run_cli(["generate", "--config", cfg, "--policy", policy, "--prompts",
                                    prompts, "--output", tmp_path / f"{policy}.jsonl",
                                    *api_flags(tmp_path)], capsys)
            assert code == 0, err
            assert all(r["status"] == "ok" for r in read_jsonl(tmp_path / f"{policy}.jsonl"))
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    records = [json.loads(ln) for ln in (tmp_path / "sim.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == [200] * 10  # 8 rows + each stage's preflight probe


def test_split_base_url_keeps_the_path_and_every_parameter():
    assert split_base_url("https://x.openai.azure.com/openai/deployments/d?api-version=2024-06-01") \
        == ("https://x.openai.azure.com/openai/deployments/d", {"api-version": "2024-06-01"})
    assert split_base_url("http://h:8/v1/?a=1&b=#frag") == ("http://h:8/v1/", {"a": "1", "b": ""})
    assert split_base_url("http://h/v1") == ("http://h/v1", {})


# --- credentials in base_url: refused, never shown --------------------------------------------

@pytest.mark.parametrize("userinfo", ["user:SECRETPASS99@", "SECRETPASS99@", "user:@"])
def test_credentials_in_base_url_are_refused_before_any_request(tmp_path, srv, key, capsys, userinfo):
    url = srv.url.replace("http://", "http://" + userinfo)
    cfg = write_config(tmp_path / "config.yaml", config(url + "?key=" + QUERY_SECRET))
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    code, _, err = run_cli(_argv("generate", tmp_path, cfg, prompts), capsys)
    assert one_error(code, err, "generate") == (
        "config key 'providers.fault.base_url': holds credentials (user:password@host): "
        f"http://***@127.0.0.1:{srv.port}/v1?key=***; they would be copied into job configs and "
        "logs, so they are refused: remove them and put the key in the environment variable named "
        "by providers.fault.api_key_env (sent as a Bearer token)")
    assert "SECRETPASS99" not in err and QUERY_SECRET not in err
    assert srv.total() == 0


@pytest.mark.parametrize("url, shown", [
    ("127.0.0.1:8000/v1", "127.0.0.1:8000/v1"), ("ftp://h/v1", "ftp://h/v1"),
    ("http:///v1?key=" + QUERY_SECRET, "http:///v1?key=***")])
def test_a_base_url_that_is_not_http_is_a_config_error(tmp_path, srv, key, capsys, url, shown):
    cfg = write_config(tmp_path / "config.yaml", config(url))
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    code, _, err = run_cli(_argv("generate", tmp_path, cfg, prompts), capsys)
    assert one_error(code, err, "generate") == (
        f"config key 'providers.fault.base_url': must be an http:// or https:// URL with a host, "
        f"got {shown}")


def test_a_repeated_query_parameter_is_a_config_error(tmp_path, srv, key, capsys):
    """The client would send a list as ``x[]=1&x[]=2``: refused rather than changed."""
    cfg = write_config(tmp_path / "config.yaml", config(srv.url + "?x=1&api-version=2&x=2"))
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    code, _, err = run_cli(_argv("generate", tmp_path, cfg, prompts), capsys)
    assert one_error(code, err, "generate") == (
        "config key 'providers.fault.base_url': query parameter 'x' is given more than once: "
        "give each parameter once (it is sent with every request)")
    assert srv.total() == 0


def test_redact_url_masks_credentials_and_query_values_in_any_text():
    assert redact_url('POST http://u:p@ss@h:8/v1/chat/completions?api-version=2024-06-01&k "200"') \
        == 'POST http://***@h:8/v1/chat/completions?api-version=***&*** "200"'
    assert redact_url("no route /v1/chat/completions?key=abc") == "no route /v1/chat/completions?key=***"
    assert redact_url("yes/no? a score/100?") == "yes/no? a score/100?"


# --- logs: quiet by default; with -v no secret in any line -------------------------------------

def test_per_request_http_lines_are_off_by_default_and_on_with_v(tmp_path, srv):
    url = f"{srv.url}?api-version=2024-06-01&key={QUERY_SECRET}"
    cfg = write_config(tmp_path / "config.yaml", config(url))
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    quiet = run_subprocess(_argv("generate", tmp_path / "a", cfg, prompts), cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "HTTP Request" not in quiet.stderr
    assert not [ln for ln in quiet.stderr.splitlines() if " httpx" in ln or " httpcore" in ln
                or " openai" in ln]

    loud = run_subprocess(["-v", *_argv("generate", tmp_path / "b", cfg, prompts)], cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    requests = [ln for ln in loud.stderr.splitlines() if "HTTP Request: POST http" in ln]
    assert len(requests) == 4  # the preflight probe and the 3 rows
    assert all(f"http://127.0.0.1:{srv.port}/v1/chat/completions?api-version=***&key=*** "
               in ln for ln in requests), requests
    for text in (quiet.stderr, loud.stderr, *(p.read_text() for p in tmp_path.rglob("*.log"))):
        assert QUERY_SECRET not in text and "2024-06-01" not in text
        assert not any(f in text for f in fragments(KEY))
    assert {e["query"] for e in srv.log} == {f"api-version=2024-06-01&key={QUERY_SECRET}"}


def test_a_provider_error_echoing_the_url_loses_its_secrets_everywhere(tmp_path, srv, key, capsys):
    """The provider's message holds the URL with credentials and the query, and the key: the
    rows, the call log and the stage's error line carry none of them."""
    echoed = (f"no deployment at http://admin:HUNTER2PASS@proxy.local/v1/chat/completions"
              f"?key={QUERY_SECRET} for key {KEY}")
    srv.set_rules([Rule("400", match="q0", message=echoed)])  # the rows, not the preflight probe
    cfg = config(f"{srv.url}?key={QUERY_SECRET}")
    cfg["execution"]["max_failed_share"] = 1.0  # keep the rows: they are checked too
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    code, _, err = run_cli(_argv("generate", tmp_path, write_config(tmp_path / "c.yaml", cfg),
                                 prompts), capsys)
    assert code == 0, err
    rows = read_jsonl(tmp_path / "base.jsonl")
    assert rows[0]["error"] == ("HTTP 400: no deployment at http://***@proxy.local/v1/chat/"
                                "completions?key=*** for key ***")
    log = (tmp_path / "api_calls.log").read_text()
    calls = [json.loads(ln) for ln in log.splitlines()]
    calls = [c for c in calls if not str(c.get("stage")).startswith("preflight:")]  # the probe passed
    assert [c["error"] for c in calls[:1]] == [rows[0]["error"]]
    for text in (err, log, (tmp_path / "base.jsonl").read_text()):
        assert "HUNTER2PASS" not in text and QUERY_SECRET not in text
        assert not any(f in text for f in fragments(KEY))

    srv.set_rules([Rule("401", message=echoed)])  # fatal: the message reaches the error line
    (tmp_path / "b").mkdir()
    code, _, err = run_cli(_argv("generate", tmp_path / "b", tmp_path / "c.yaml", prompts), capsys)
    line = one_error(code, err, "generate")
    assert line.startswith("provider 'fault' answered HTTP 401: no deployment at "
                           "http://***@proxy.local/v1/chat/completions?key=*** for key ***")
    assert "HUNTER2PASS" not in err and QUERY_SECRET not in err
