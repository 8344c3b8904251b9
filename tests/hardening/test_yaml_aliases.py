"""YAML alias bombs: one bounded loader (cje/llm/yamlfile.py) for every config a ``cje``
command reads, and the workflow checks every config file with it before walking the config
(``python -m cje`` and ``snakemake -n`` in subprocesses, memory-limited)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hardlib import REPO, SNAKEMAKE, cje_process, one_line_error

# --- YAML alias bombs --------------------------------------------------------------------------
def _bomb(levels: int = 8, width: int = 9, mapping: bool = False) -> str:
    lines = ["    extra_body:"]
    if mapping:
        keys = "abcdefghi"[:width]
        lines.append("      m0: &m0 {" + ", ".join(f"{c}: x" for c in keys) + "}")
        lines += [f"      m{i}: &m{i} {{" + ", ".join(f"{c}: *m{i - 1}" for c in keys) + "}"
                  for i in range(1, levels)]
    else:
        lines.append("      l0: &l0 [" + ", ".join(["x"] * width) + "]")
        lines += [f"      l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _config_with(text: str, path: Path) -> Path:
    cfg = (REPO / "config" / "config.yaml").read_text()
    anchor = "    max_tokens: 64\n  concise:"
    assert anchor in cfg
    path.write_text(cfg.replace(anchor, "    max_tokens: 64\n" + text + "  concise:", 1))
    return path


@pytest.mark.parametrize("mapping", [False, True])
def test_cje_refuses_an_alias_bomb_in_one_line_naming_the_file(tmp_path, mapping):
    cfg = _config_with(_bomb(mapping=mapping), tmp_path / "bomb.yaml")
    t0 = time.monotonic()
    proc = cje_process("cost", "--estimate", "--config", cfg, cwd=REPO)
    one_line_error(proc, "cost", str(cfg), "aliases", "100,000")
    assert time.monotonic() - t0 < 30


def test_a_recursive_alias_is_refused(tmp_path):
    cfg = _config_with("    extra_body: &loop\n      again: *loop\n", tmp_path / "loop.yaml")
    one_line_error(cje_process("cost", "--estimate", "--config", cfg, cwd=REPO), "cost", str(cfg), "recursive alias")


def test_ordinary_aliases_still_load(tmp_path):
    """A shared block (a few aliases, a few values) is what anchors are for: it must keep working,
    and just above the bound it must not."""
    shared = "    extra_body: &shared {top_k: 40, stop: [END]}\n"
    cfg = _config_with(shared, tmp_path / "shared.yaml")
    # the policy before `cool` (concise) shares the base policy's block
    cfg.write_text(cfg.read_text().replace("    max_tokens: 64\n  cool:",
                                           "    max_tokens: 64\n    extra_body: *shared\n  cool:", 1))
    proc = cje_process("cost", "--estimate", "--config", cfg, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    from cje.llm.config import load_config

    loaded = load_config(cfg)["policies"]
    assert loaded["concise"]["extra_body"] == loaded["base"]["extra_body"] == {"top_k": 40, "stop": ["END"]}
    # 6 levels of 10 aliases expand to 1.2 million values (refused), 4 levels to 12,000 (loaded)
    just_over = _config_with(_bomb(levels=6, width=10), tmp_path / "over.yaml")
    one_line_error(cje_process("cost", "--estimate", "--config", just_over, cwd=REPO), "cost", "aliases")
    under = _config_with(_bomb(levels=4, width=10), tmp_path / "under.yaml")  # 11,100 values
    assert cje_process("cost", "--estimate", "--config", under, cwd=REPO).returncode == 0


def _limit_memory():  # 3 GB of address space: the unchecked bomb needed more (issue: 3.2 GB)
    resource.setrlimit(resource.RLIMIT_AS, (3 * 1024 ** 3, 3 * 1024 ** 3))


@pytest.mark.parametrize("where", ["configfile", "default"])
def test_snakemake_dry_run_refuses_an_alias_bomb_before_walking_the_config(tmp_path, where):
    """A list bomb in ``policies.*.extra_body``, given with --configfile (Snakemake's own merge
    keeps lists shared) or as the default config/config.yaml (checked before the ``configfile:``
    directive merges it): exit 2, one line naming the file, in seconds and bounded memory."""
    work = tmp_path / "wf"
    for item in ("rules", "scripts", "schemas", "config", "envs", "report", "profiles", "cje"):
        shutil.copytree(REPO / item, work / item, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "Snakefile", work / "Snakefile")
    (work / "data").mkdir()
    shutil.copy2(REPO / "data" / "default_prompts.jsonl", work / "data")
    if where == "default":
        bomb = _config_with(_bomb(mapping=True), work / "config" / "config.yaml")
        args = []
    else:
        bomb = _config_with(_bomb(), work / "bomb.yaml")
        args = ["--configfile", "bomb.yaml"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([SNAKEMAKE, "-n", "--cores", "1", *args], cwd=work, env=env, text=True,
                          capture_output=True, timeout=240, preexec_fn=_limit_memory)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("invalid workflow config")]
    assert len(lines) == 1 and bomb.name in lines[0] and "aliases" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
