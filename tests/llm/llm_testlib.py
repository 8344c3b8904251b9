"""Helpers shared by the LLM-stage tests (configs pointing at the fault server, prompt files).

A uniquely named module (not ``conftest``): the repository has several conftest.py
files, and ``import conftest`` would pick whichever was imported first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

FAKE_KEY = "sk-cje-test-SECRET-7f3a9c1e5b"
REPO = Path(__file__).resolve().parents[2]
RUBRICS = REPO / "config" / "rubrics"


def make_config(url: str, *, max_concurrency: int = 4, timeout_s: float = 0.5,
                max_retries: int = 3, judge_method: str = "structured",
                oracle_method: str = "structured", n_rubric_samples: int = 2,
                chat_template: str = "none", batch_size: int = 5) -> dict:
    """A workflow config whose one provider is the fault server at ``url`` with
    short timeouts and backoffs (so fault tests run in well under a second each)."""
    judge_rubric = "judge.txt" if judge_method == "yes_no_logprob" else "judge_score.txt"
    oracle_rubric = "oracle.txt" if oracle_method == "yes_no_logprob" else "oracle_score.txt"
    pol = {"provider": "fault", "model": "fault-model", "chat_template": chat_template,
           "system_prompt": "You are a helpful assistant.", "temperature": 1.0,
           "max_tokens": 16}
    return {
        "prompts": {"source": str(REPO / "data" / "default_prompts.jsonl"), "n_samples": None,
                    "seed": 1},
        "providers": {"fault": {
            "kind": "openai", "base_url": url, "api_key_env": "CJE_TEST_API_KEY",
            "max_concurrency": max_concurrency, "timeout_s": timeout_s,
            "max_retries": max_retries, "retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05,
            "cost_per_million_input_tokens": 1.0, "cost_per_million_output_tokens": 2.0}},
        "base_policy": "base",
        "policies": {"base": dict(pol),
                     "short": {**pol, "system_prompt": "Answer in one sentence."}},
        "judge": {"provider": "fault", "model": "judge-model", "method": judge_method,
                  "rubric_file": str(RUBRICS / judge_rubric), "parse_retries": 1},
        "oracle": {"provider": "fault", "model": "oracle-model", "method": oracle_method,
                   "rubric_file": str(RUBRICS / oracle_rubric),
                   "n_rubric_samples": n_rubric_samples, "coverage": 0.5,
                   "fresh_draw_coverage": 1.0, "seed": 7, "parse_retries": 1},
        "fresh_draws": {"draws_per_prompt": 1},
        "execution": {"shards": 1, "batch_size": batch_size},
    }


def write_config(path: Path, cfg: dict) -> Path:
    """Write ``cfg`` as YAML to ``path`` and return the path."""
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def write_prompts(path: Path, n: int, tag: str = "q") -> Path:
    """``n`` distinct prompts ``{tag}{i:03d} ...`` with prompt_ids ``{tag}{i:03d}``."""
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"prompt_id": f"{tag}{i:03d}",
                                 "prompt": f"{tag}{i:03d}: say something about {i}"}) + "\n")
    return path
