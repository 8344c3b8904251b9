"""The code-hash groups of rules/common.smk cover what each rule really imports.

LLM rules hash only ``cje/llm/**`` + ``cje/errors.py``, ``cje/atomic.py``, ``cje/paths.py``;
that is right only while the LLM package imports nothing else from ``cje``. This test fails when it starts to,
so the group in rules/common.smk (CODE_GROUPS) gets updated with it.
"""

from __future__ import annotations

import ast

from .wfutil import REPO

LLM_GROUP_MODULES = ("cje.llm", "cje.errors", "cje.atomic", "cje.paths")


def _cje_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def test_llm_package_imports_only_its_hash_group():
    outside = []
    for path in sorted((REPO / "cje" / "llm").rglob("*.py")):
        for module, line in _cje_imports(path):
            if module == "cje" or module.startswith("cje."):
                if not any(module == m or module.startswith(m + ".") for m in LLM_GROUP_MODULES):
                    outside.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not outside, ("cje/llm imports modules outside the LLM code-hash group; add them "
                         "to CODE_GROUPS['llm'] in rules/common.smk:\n" + "\n".join(outside))


def test_code_groups_in_common_smk_match_this_test():
    text = (REPO / "rules" / "common.smk").read_text()
    assert '"llm": {"include": ["cje/llm/**/*.py", "cje/errors.py", "cje/atomic.py", "cje/paths.py"],' in text
    assert '"exclude": ["cje/llm/"]' in text
