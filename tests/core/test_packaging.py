"""pyproject.toml and environment.yml list the same packages; the README's commands exist."""

from __future__ import annotations

import re
import tomllib

import yaml

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _normalise(spec: str) -> str:
    return re.sub(r"\s+", "", spec).lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {p for p in pip_block if not p.startswith("-e")}
    assert {_normalise(s) for s in listed} == {_normalise(s) for s in wanted}


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme
    assert ci.strip().splitlines()[-1].strip() == "make test"
