"""Helpers of the LLM hardening tests: a workflow config pointing at the fault server
(tests/servers/fault_server.py, 127.0.0.1 only), prompt and response files, the
``cje`` command in this process or as a subprocess, and the one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "servers"))

from fault_server import FaultServer, Rule  # noqa: F401 (re-exported for the tests)

KEY_ENV = "CJE_HARDENING_API_KEY"
KEY = "sk-hardening-7Qm2Xv9LpR4tZ8wK"
RUBRICS = REPO / "config" / "rubrics"


def config(url: str, *, max_concurrency: int = 4, **execution) -> dict:
    """A workflow config whose one provider is the fault server at ``url`` (short
    backoffs, one retry) with policies ``base`` (chat) and ``tf`` (gemma template:
    completions, teacher-forceable); ``execution`` keys are added as given."""
    pol = {"provider": "fault", "model": "fault-model", "chat_template": "none",
           "system_prompt": "You are a helpful assistant.", "temperature": 1.0,
           "max_tokens": 16}
    return {
        "providers": {"fault": {
            "kind": "openai", "base_url": url, "api_key_env": KEY_ENV,
            "max_concurrency": max_concurrency, "timeout_s": 5, "max_retries": 1,
            "retry_backoff_s": 0.01, "retry_backoff_max_s": 0.02}},
        "base_policy": "base",
        "policies": {"base": pol, "tf": {**pol, "chat_template": "gemma"}},
        "judge": {"provider": "fault", "model": "judge-model", "method": "structured",
                  "rubric_file": str(RUBRICS / "judge_score.txt"), "parse_retries": 1},
        "oracle": {"provider": "fault", "model": "oracle-model", "method": "structured",
                   "rubric_file": str(RUBRICS / "oracle_score.txt"), "coverage": 0.5,
                   "seed": 7, "parse_retries": 1},
        "execution": {"shards": 1, **execution},
    }


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def write_prompts(path: Path, n: int) -> Path:
    """``n`` prompts ``q000``.. whose text starts with the id (fault rules match on it)."""
    path.write_text("".join(json.dumps({"prompt_id": f"q{i:03d}",
                                        "prompt": f"q{i:03d}: say something about {i}"}) + "\n"
                            for i in range(n)))
    return path


def write_responses(path: Path, n: int, failed: int = 0, policy: str = "base") -> Path:
    """``n`` response rows (``r000``..); the last ``failed`` of them failed in generation."""
    rows = []
    for i in range(n):
        ok = i < n - failed
        rows.append({"prompt_id": f"q{i:03d}", "prompt": f"q{i:03d}: say something about {i}",
                     "policy": policy, "draw_idx": 0, "status": "ok" if ok else "error",
                     "response": f"r{i:03d} an answer" if ok else None,
                     "error": None if ok else "HTTP 500: generation failed"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def api_flags(tmp_path: Path) -> list[str]:
    """The request cache and call log under ``tmp_path`` (never in the repository)."""
    return ["--request-cache", str(tmp_path / "requests"), "--api-log",
            str(tmp_path / "api_calls.log")]


def error_lines(err: str, command: str) -> list[str]:
    """The ``cje <command>: error: ...`` lines of ``err``."""
    return [ln for ln in err.splitlines() if ln.startswith(f"cje {command}: error: ")]


def one_error(code: int, err: str, command: str) -> str:
    """Exit code 2, no traceback, exactly one error line: return it without its prefix."""
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = error_lines(err, command)
    assert len(lines) == 1, err
    return lines[0][len(f"cje {command}: error: "):]


def run_subprocess(argv: list[str], cwd: Path, key: str | None = KEY,
                   timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m cje ARGV`` in a fresh process (its own logging set-up, as a user runs it)."""
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if key is not None:
        env[KEY_ENV] = key
    return subprocess.run([sys.executable, "-m", "cje", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def fragments(secret: str, n: int = 8) -> list[str]:
    """Every ``n``-character piece of ``secret`` (none may appear in any output)."""
    return [secret[i:i + n] for i in range(len(secret) - n + 1)]
