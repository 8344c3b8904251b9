"""Shared helpers of the hardening tests: a small valid dataset and an in-process CLI runner."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from cje.cli import main

POLICIES = ("a", "b")


def rows(n: int = 40, labelled: int = 30, seed: int = 0) -> list[dict]:
    """Valid logged rows (pipeline layout: judge score and oracle label under ``metadata``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = float(rng.uniform(0.1, 0.9))
        row = {"prompt_id": f"p{i}", "prompt": f"question {i}", "response": f"answer {i}",
               "base_policy_logprob": float(-10 - rng.uniform(0, 2)),
               "target_policy_logprobs": {p: float(-10 - rng.uniform(0, 2)) for p in POLICIES},
               "metadata": {"judge_score": s}}
        if i < labelled:
            row["metadata"]["oracle_label"] = float(np.clip(s + rng.normal(0, 0.1), 0, 1))
        out.append(row)
    return out


def fresh_rows(policy: str, n: int = 40, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed + POLICIES.index(policy) if policy in POLICIES else seed)
    return [{"prompt_id": f"p{i}", "draw_idx": 0, "judge_score": float(rng.uniform(0.1, 0.9)),
             "response": f"fresh {i}"} for i in range(n)]


def write_jsonl(path: Path, items: list, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in items]
    for index, text in (raw_lines or {}).items():
        lines[index] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def write_fresh(directory: Path, policies=POLICIES, n: int = 40) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for p in policies:
        write_jsonl(directory / f"{p}_responses.jsonl", fresh_rows(p, n))
    return directory


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cje.cli.main(argv)`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def analyze_argv(data: Path, out: Path, *extra, estimator: str = "raw-ips") -> list[str]:
    return ["analyze", "--data", str(data), "--estimator", estimator, "--output-dir", str(out), *extra]


def files_under(path: Path) -> list[str]:
    """Every file and folder below ``path`` (relative, sorted), hidden ones included."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("cje analyze: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def finite_estimates(out: Path) -> bool:
    payload = json.loads((out / "estimates.json").read_text())
    meta = payload["metadata"]
    return all(all(v is not None and math.isfinite(v) for v in
                   (meta["policies"][p][k] for k in ("estimate", "se", "ci_lower", "ci_upper")))
               for p in meta["target_policies"])


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def cje_process(*argv, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m cje ARGV`` with this checkout's package first on the path."""
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "cje", *map(str, argv)], cwd=cwd, env=full, text=True,
                          capture_output=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    """Assert exit 2 and one stderr line ``cje COMMAND: error: ...`` holding every needle; return it."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"cje {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def many_policies(path: Path, n_targets: int, n: int = 60, seed: int = 0) -> Path:
    """Logged rows with ``n_targets`` targets t00, t01, ... whose log-probs differ a little."""
    rng = np.random.default_rng(seed)
    names = [f"t{j:02d}" if n_targets <= 100 else f"t{j:03d}" for j in range(n_targets)]
    shift = np.linspace(-0.6, 0.6, n_targets)
    with path.open("w") as fh:
        for i in range(n):
            s = float(rng.uniform(0.1, 0.9))
            base = float(-10 - rng.uniform(0, 1))
            row = {"prompt_id": f"p{i}", "prompt": f"q{i}", "response": f"r{i}", "base_policy_logprob": base,
                   "target_policy_logprobs": {t: base + float(shift[j] * (s - 0.5) + rng.normal(0, 0.05))
                                              for j, t in enumerate(names)},
                   "metadata": {"judge_score": s, "oracle_label": float(np.clip(s + rng.normal(0, 0.1), 0, 1))}}
            fh.write(json.dumps(row) + "\n")
    return path
