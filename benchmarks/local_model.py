"""Speed and validity numbers of the embedded local model (Gemma 3 270M, 1 thread).

``python -m benchmarks.local_model [--n-prompts 10]`` starts the embedded server,
and over the first N default prompts measures, with the default base policy
(system prompt, T = 1, max_tokens 64):

- generation: generated tokens per second (wall time of the whole request, so
  prompt evaluation and HTTP are included) and per-request latency;
- teacher forcing: latency of one ``offsets`` call (the response scored one
  token per decode, as sampled) and, for comparison, of a batched echo (the
  response in one batch: faster, but not the sampled density);
- the batched-vs-sequential discrepancy: max |per-token log-prob difference| and
  the summed difference per response (why the sequential scoring exists);
- re-tokenization: share of sampled responses whose text re-tokenizes to other
  tokens than were sampled (teacher forcing then scores the canonical path);
- a yes/no judgment (``max_tokens=1, logprobs=20``, ~60-token prompt): latency.

Prints a table and writes ``benchmarks/results/local_model.json``. The CPU is
shared on CI/dev machines: compare numbers from the same machine and load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import openai

from cje.llm.local.server import local_server
from cje.llm.templates import end_of_turn, render_full, render_prompt

REPO = Path(__file__).resolve().parent.parent
SYSTEM = "You are a helpful assistant."
JUDGE = ("Question: {q}\nAnswer: {a}\nIs the answer helpful and correct? Yes or No? Reply:")


def _echo(client, text: str, prompt_chars: int | None):
    extra = {} if prompt_chars is None else {"extra_body": {"cje_prompt_chars": prompt_chars}}
    t0 = time.perf_counter()
    resp = client.completions.create(model="gemma-3-270m", prompt=text, max_tokens=0, echo=True,
                                     logprobs=1, temperature=1.0, **extra)
    return resp.choices[0].logprobs, time.perf_counter() - t0


def run(n_prompts: int = 10, out: Path | None = None) -> dict:
    """Run the measurements; return (and write to ``out``) a dict of results."""
    prompts = [json.loads(line)["prompt"] for line in
               (REPO / "data" / "default_prompts.jsonl").read_text().splitlines()[:n_prompts]]
    gen_tokens, gen_s, gen_lat, tf_seq, tf_batch, judge_lat = 0, 0.0, [], [], [], []
    max_tok_diff, sum_diffs, retok = 0.0, [], 0
    with local_server(n_threads=1) as url:
        client = openai.OpenAI(base_url=url, api_key="not-needed", timeout=300)
        client.completions.create(model="gemma-3-270m", prompt="warm up", max_tokens=2, seed=0)
        for i, q in enumerate(prompts):
            prompt = render_prompt("gemma", SYSTEM, q)
            t0 = time.perf_counter()
            choice = client.completions.create(model="gemma-3-270m", prompt=prompt, max_tokens=64,
                                               temperature=1.0, seed=i, logprobs=0,
                                               stop=[end_of_turn("gemma")]).choices[0]
            dt = time.perf_counter() - t0
            sampled = choice.logprobs.model_extra["token_ids"]
            gen_tokens += len(sampled)
            gen_s += dt
            gen_lat.append(dt)
            full = render_full("gemma", SYSTEM, q, choice.text) if choice.finish_reason == "stop" \
                else prompt + choice.text
            seq, dt_seq = _echo(client, full, len(prompt))
            bat, dt_bat = _echo(client, full, None)
            tf_seq.append(dt_seq)
            tf_batch.append(dt_bat)
            n_prompt_tokens = len(client.completions.create(
                model="gemma-3-270m", prompt=prompt, max_tokens=0, echo=True, logprobs=1).choices[0].logprobs.tokens)
            a = seq.token_logprobs[n_prompt_tokens:]
            b = bat.token_logprobs[n_prompt_tokens:]
            max_tok_diff = max(max_tok_diff, max(abs(x - y) for x, y in zip(a, b)))
            sum_diffs.append(abs(sum(a) - sum(b)))
            forced = seq.model_extra["token_ids"][n_prompt_tokens:]
            retok += forced[: len(sampled)] != sampled
            t0 = time.perf_counter()
            client.completions.create(model="gemma-3-270m", prompt=JUDGE.format(q=q, a=choice.text[:200]),
                                      max_tokens=1, logprobs=20, temperature=0.0)
            judge_lat.append(time.perf_counter() - t0)
    med = statistics.median
    result = {
        "n_prompts": len(prompts), "threads": 1, "load_avg": list(os.getloadavg()),
        "generated_tokens_per_s": gen_tokens / gen_s, "generate_request_median_s": med(gen_lat),
        "mean_generated_tokens": gen_tokens / len(prompts),
        "teacher_forcing_call_median_s": med(tf_seq), "batched_echo_call_median_s": med(tf_batch),
        "batched_vs_sequential_max_token_diff_nats": max_tok_diff,
        "batched_vs_sequential_median_sum_diff_nats": med(sum_diffs),
        "retokenization_mismatch_share": retok / len(prompts),
        "yes_no_judgment_median_s": med(judge_lat),
    }
    for k, v in result.items():
        print(f"{k:48s} {v:.4g}" if isinstance(v, float) else f"{k:48s} {v}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-prompts", type=int, default=10)
    ap.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "local_model.json"))
    args = ap.parse_args()
    run(args.n_prompts, Path(args.output))
