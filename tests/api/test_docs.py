"""docs/api.md's Quick start block runs as written (extracted and executed in a fresh interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def _quick_start() -> str:
    text = (REPO / "docs" / "api.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Quick start section has exactly one python block"
    return blocks[0]


def test_api_md_quick_start_runs(arena_dir, tmp_path):
    script = tmp_path / "quick_start.py"
    script.write_text(_quick_start())
    env = {**os.environ, "PYTHONPATH": str(REPO), "CJE_ARENA_SAMPLE": str(arena_dir), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "NOT resolved" in proc.stdout and "model: half-width(m)" in proc.stdout
    assert (tmp_path / "arena_direct" / "estimates.json").exists()
    assert (tmp_path / "arena_direct" / "plots" / "diagnostics_dashboard.html").exists()
