"""Teacher-forced log-probs on the real local model (Gemma 3 270M, one thread).

Checked: determinism, offsets == two-call difference (1e-4), scoring at the
policy's temperature (against an independent in-process llama.cpp computation),
agreement with the log-probs reported while sampling, and the refusal / error
rules. Runs through L1's ``LLMClient`` like the stage does.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

import numpy as np
import openai
import pytest

from cje.llm.client.http import LLMClient
from cje.llm.config import PolicyConfig, ProviderConfig
from cje.llm.local.engine import log_softmax_rows
from cje.llm.local.model import ensure_model_file
from cje.llm.stages.teacher_forcing import (
    Echo, SpanError, echo_from_response, locate_span, refusal_reason, render_pair,
    score_from_echo, score_response, score_two_call, sum_checked,
)
from cje.llm.templates import end_of_turn, render_full, render_prompt

pytestmark = pytest.mark.llm
MODEL = "gemma-3-270m"
SYSTEM = "You are a helpful assistant."
BASE = PolicyConfig(name="base", provider="local", model=MODEL, chat_template="gemma",
                    system_prompt=SYSTEM, temperature=1.0, max_tokens=32)
PROVIDER = ProviderConfig(name="local", kind="local", max_concurrency=1, timeout_s=120, max_retries=1)
ODD_RESPONSES = [
    "Paris. 😀 Ünïcödé — done",          # multi-byte characters split across tokens
    "\nStarts with a newline.",            # may merge with the template's newline
    "",                                    # empty response: only the end-of-turn token
    "Text with <start_of_turn> inside",    # a special token in the response
]


@pytest.fixture(scope="module")
def sync_client(server):
    return openai.OpenAI(base_url=server, api_key="not-needed", max_retries=0, timeout=120)


def _run(coro_fn, server):
    async def main():
        async with LLMClient(PROVIDER, server, stage="test") as client:
            return await coro_fn(client)
    return asyncio.run(main())


def _sample(sync_client, user: str, temperature: float, seed: int, max_tokens: int = 24):
    prompt = render_prompt("gemma", SYSTEM, user)
    resp = sync_client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens,
                                          temperature=temperature, seed=seed, logprobs=0,
                                          stop=[end_of_turn("gemma")])
    return resp.choices[0]


def _echo(sync_client, text: str, temperature: float, prompt_chars: int) -> Echo:
    resp = sync_client.completions.create(model=MODEL, prompt=text, max_tokens=0, echo=True,
                                          logprobs=1, temperature=temperature,
                                          extra_body={"cje_prompt_chars": prompt_chars})
    return echo_from_response(resp)


def test_same_policy_and_response_scored_twice_is_identical(server, sync_client):
    response = _sample(sync_client, "What is the capital of France?", 1.0, seed=1).text
    scores = _run(lambda c: asyncio.gather(*[
        score_response(c, BASE, "What is the capital of France?", response, "p1", True) for _ in range(2)]), server)
    assert scores[0].status == "ok" and scores[0].method == "offsets"
    assert scores[0].logprob == scores[1].logprob  # bit-identical: each call starts from an empty cache
    assert scores[0].n_tokens == scores[1].n_tokens > 0


def test_offsets_sum_equals_two_call_difference(server, sync_client):
    responses = [_sample(sync_client, f"Tell me a fact about the number {i}.", 1.0, seed=i).text
                 for i in range(2)] + ODD_RESPONSES
    user = "Say something."
    for temperature in (0.6,):
        pol = replace(BASE, temperature=temperature)
        scores = _run(lambda c: asyncio.gather(*[score_response(c, pol, user, r, "p", True)
                                                 for r in responses]), server)
        for response, score in zip(responses, scores):
            prompt_text, full_text = render_pair(pol, user, response)
            two = score_two_call(_echo(sync_client, full_text, temperature, len(prompt_text)),
                                 _echo(sync_client, prompt_text, temperature, len(prompt_text)), temperature)
            assert score.status == "ok" and two.status == "ok", (response, score, two)
            assert abs(score.logprob - two.logprob) < 1e-4, (response, score, two)
            assert score.n_tokens == two.n_tokens
    assert sum(s.method == "offsets" for s in scores) >= len(responses) - 1


def _inprocess_logprob(full_text: str, prompt_text: str, temperature: float) -> tuple[float, int]:
    """Independent reference: llama_cpp.Llama(logits_all=True).eval + numpy log-softmax(logits/T).

    Evaluated like sampling: the prompt tokenized alone and evaluated in one batch, then
    one response token per eval (the canonical tokenization of the response).
    """
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(ensure_model_file()), n_ctx=512, n_threads=1,
                          n_threads_batch=1, logits_all=True, verbose=False)
    try:
        head = llm.tokenize(prompt_text.encode(), add_bos=True, special=True)  # as when sampling
        rest = full_text[len(prompt_text):].encode()
        toks = head + llm.tokenize(rest, add_bos=False, special=True)
        n_prompt = len(head)
        llm.eval(toks[:n_prompt])
        for tok in toks[n_prompt:]:
            llm.eval([tok])
        lp = log_softmax_rows(np.asarray(llm.scores[: len(toks) - 1]), temperature)
        rows = np.arange(n_prompt - 1, len(toks) - 1)
        return float(lp[rows, np.asarray(toks)[rows + 1]].sum()), len(rows)
    finally:
        llm.close()


def test_response_sampled_at_temperature_scores_at_that_temperature(server, sync_client):
    user = "Describe the sea in one sentence."
    cool = replace(BASE, name="cool", temperature=0.5)
    choice = _sample(sync_client, user, 0.5, seed=5)
    response = choice.text
    at_half, at_one = _run(lambda c: asyncio.gather(
        score_response(c, cool, user, response, "p", True),
        score_response(c, BASE, user, response, "p", True)), server)
    assert at_half.status == at_one.status == "ok"
    assert at_half.logprob_temperature == 0.5 and at_one.logprob_temperature == 1.0
    assert abs(at_half.logprob - at_one.logprob) > 1.0  # llama.cpp's own server returns the same number
    prompt_text, full_text = render_pair(cool, user, response,
                                         include_end_of_turn=choice.finish_reason == "stop")
    ref, n_ref = _inprocess_logprob(full_text, prompt_text, 0.5)
    if choice.finish_reason == "stop":
        assert abs(at_half.logprob - ref) < 1e-4 and at_half.n_tokens == n_ref
    else:  # cut by max_tokens: compare the same string
        cut = _run(lambda c: score_response(c, cool, user, response, "p", True, include_end_of_turn=False), server)
        assert abs(cut.logprob - ref) < 1e-4 and cut.n_tokens == n_ref


def test_scoring_the_sampled_token_path_reproduces_the_sampling_logprobs(server, sync_client):
    """Teacher forcing with the token ids returned at sampling time gives exactly the
    log-probs reported while sampling (the density actually sampled from), also for
    samples whose text re-tokenizes differently (then the canonical path differs)."""
    user, pol = "Name a colour.", replace(BASE, temperature=0.7)
    prompt_text = render_prompt("gemma", SYSTEM, user)
    non_canonical = 0
    for seed in range(6):
        choice = _sample(sync_client, user, 0.7, seed=seed, max_tokens=12)
        ids = choice.model_extra["token_ids"]
        assert ids == choice.logprobs.model_extra["token_ids"]
        eot = choice.finish_reason == "stop"
        exact, canonical = _run(lambda c: asyncio.gather(
            score_response(c, pol, user, choice.text, "p", True, include_end_of_turn=eot, response_token_ids=ids),
            score_response(c, pol, user, choice.text, "p", True, include_end_of_turn=eot)), server)
        assert exact.status == "ok" and exact.token_path == "sampled" and canonical.token_path == "canonical"
        expected = sum(choice.logprobs.token_logprobs)
        if eot:  # the end-of-turn token is not in the sampling report: take it from the echo
            full = render_full("gemma", SYSTEM, user, choice.text)
            expected += sync_client.completions.create(
                model=MODEL, prompt=full, max_tokens=0, echo=True, logprobs=1, temperature=0.7,
                extra_body={"cje_prompt_chars": len(prompt_text), "cje_response_token_ids": ids},
            ).choices[0].logprobs.token_logprobs[-1]
        assert abs(exact.logprob - expected) < 1e-9  # same kernels, same numbers
        assert exact.n_tokens == len(ids) + eot
        non_canonical += exact.n_tokens != canonical.n_tokens or abs(exact.logprob - canonical.logprob) > 1e-6
    if not non_canonical:
        # Whether a sample re-tokenizes differently depends on the llama.cpp build (seeds 0-5 did with the
        # build this test was written on, none of 60 seeds did with llama-cpp-python 0.3.36). The case the
        # sampled path exists for is then built: the same text as a non-canonical token path (split inside
        # the text, each part tokenized alone), which must be scored as given, not re-tokenized.
        import llama_cpp

        vocab = llama_cpp.Llama(model_path=str(ensure_model_file()), vocab_only=True, verbose=False)
        text = choice.text
        canonical_ids = vocab.tokenize(text.encode(), add_bos=False, special=False)
        alt = next((a for a in (vocab.tokenize(text[:cut].encode(), add_bos=False, special=False)
                                + vocab.tokenize(text[cut:].encode(), add_bos=False, special=False)
                                for cut in range(1, len(text)))
                    if a != canonical_ids and vocab.detokenize(a) == text.encode()), None)
        assert alt is not None, f"no non-canonical token path of {text!r}"
        forced, canonical = _run(lambda c: asyncio.gather(
            score_response(c, pol, user, text, "p", True, include_end_of_turn=eot, response_token_ids=alt),
            score_response(c, pol, user, text, "p", True, include_end_of_turn=eot)), server)
        assert forced.status == "ok" and forced.token_path == "sampled"
        assert forced.n_tokens == len(alt) + eot  # the given path, not the canonical re-tokenization
        assert forced.n_tokens != canonical.n_tokens or abs(forced.logprob - canonical.logprob) > 1e-6
        non_canonical += 1
    assert non_canonical >= 1


def test_refusals_and_error_statuses(sync_client):
    # policies whose log-probs cannot be sampling densities are refused, with the reason
    assert "chat_template 'none'" in refusal_reason(replace(BASE, chat_template="none"))
    assert "greedy" in refusal_reason(replace(BASE, temperature=0.0))
    assert "top_p" in refusal_reason(replace(BASE, top_p=0.9))
    assert "top_k" in refusal_reason(replace(BASE, extra_body={"top_k": 40}))
    assert refusal_reason(replace(BASE, extra_body={"top_k": 0, "min_p": 0.0})) is None
    # a server that does not say at which T it scored is taken to score at T=1: refuse T != 1
    prompt_text, full_text = render_pair(BASE, "Hi", "Hello there.")
    echo = _echo(sync_client, full_text, 1.0, len(prompt_text))
    echo.logprob_temperature = None
    ok = score_from_echo(echo, prompt_text, full_text, 1.0)
    assert ok.status == "ok" and ok.logprob < 0
    refused = score_from_echo(echo, prompt_text, full_text, 0.7)
    assert refused.status == "error" and refused.logprob is None and "refusing" in refused.error
    # a response that is not in the echo is an error, never a number
    with pytest.raises(SpanError):
        locate_span(echo, render_prompt("gemma", SYSTEM, "Another prompt"), full_text)
    short = _echo(sync_client, prompt_text, 1.0, len(prompt_text))
    missing = score_two_call(short, short, 1.0)
    assert missing.status == "error" and missing.logprob is None and "not found" in missing.error
    with pytest.raises(ValueError, match="> 0"):
        sum_checked([-1.0, 0.5], "span")
    with pytest.raises(ValueError, match="nan"):
        sum_checked([-1.0, math.nan], "span")
