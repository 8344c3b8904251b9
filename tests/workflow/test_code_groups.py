"""The package's layers (docs/architecture.md) and the code-hash groups that follow them.

Every import inside ``cje`` (at module level or inside a function) must go from a
layer to one the table allows, and the import graph must have no cycle. The LLM
rules hash only the ``llm`` group of rules/common.smk (CODE_GROUPS), which is right
only while ``cje/llm`` imports nothing outside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .wfutil import REPO

PACKAGE = REPO / "cje"

# module prefix -> layer (the longest matching prefix wins)
LAYER_OF = {
    "cje": "face", "cje.__main__": "face",
    "cje.errors": "foundation", "cje.atomic": "foundation", "cje.names": "foundation",
    "cje.data": "data", "cje.stats": "stats", "cje.results": "results",
    "cje.llm": "llm-base", "cje.llm.local": "llm-local", "cje.llm.client": "llm-client",
    "cje.llm.stages": "llm-stages", "cje.llm.cost": "llm-accounting", "cje.llm.cost_estimate": "llm-accounting",
    "cje.estimators": "estimators", "cje.checks": "checks", "cje.viz": "viz",
    "cje.analysis": "analysis", "cje.api": "api", "cje.sim": "sim", "cje.cli": "cli",
}
LLM = {"llm-base", "llm-local", "llm-client", "llm-stages", "llm-accounting"}
# layer -> the layers it may import (its own layer always; ``cje`` itself defines only
# ``__version__`` and the lazy public names, so every layer may import it)
ALLOWED = {
    "foundation": set(),
    "data": {"foundation"},
    "stats": {"foundation"},
    "results": {"foundation"},
    "llm-base": {"foundation"},
    "llm-local": {"foundation", "llm-base"},
    "llm-client": {"foundation", "llm-base", "llm-local"},
    "llm-stages": {"foundation", "llm-base", "llm-local", "llm-client"},
    "llm-accounting": {"foundation", "llm-base", "llm-client"},
    "estimators": {"foundation", "stats", "data"},
    "checks": {"foundation", "stats"},
    "viz": {"foundation", "results"},
    # plan.figure() draws with viz (imported when called: matplotlib costs start-up)
    "analysis": {"foundation", "data", "stats", "results", "estimators", "checks", "viz"},
    "api": {"foundation", "data", "results", "viz", "analysis", "estimators"},  # AnalysisOptions
    "sim": {"foundation", "data", "stats", "estimators", "analysis"},
    "cli": {"foundation", "data", "stats", "results", *LLM, "estimators", "checks", "viz", "analysis", "api",
            "sim"},
    "face": {"cli"},  # python -m cje
}
# the root of cje/ holds only the foundation and the public face
ROOT_MODULES = {"__init__.py", "__main__.py", "errors.py", "atomic.py", "names.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    best = max((k for k in LAYER_OF if module == k or module.startswith(k + ".")), key=len)
    return LAYER_OF[best]


def _imports(path: Path, modules: dict[str, Path]):
    """(imported cje module, line, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                module = resolve(child)
                if module == "cje" or module.startswith("cje."):
                    for alias in child.names:  # `from cje.x import y` may name a submodule
                        sub = f"{module}.{alias.name}"
                        yield (sub if sub in modules else module), child.lineno, inner
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == "cje" or alias.name.startswith("cje."):
                        yield alias.name, child.lineno, inner
            else:
                yield from visit(child, inner)

    yield from visit(tree, False)


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    wrong = []
    for name, path in modules.items():
        src = _layer(name)
        for target, line, _ in _imports(path, modules):
            if target not in modules:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {target}, which does not exist")
                continue
            if target != name:
                graph[name].add(target)
            dst = _layer(target)
            if dst != src and target != "cje" and dst not in ALLOWED[src]:
                wrong.append(f"{path.relative_to(REPO)}:{line} ({src}) imports {target} ({dst})")
    return graph, wrong


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_every_module_has_a_layer_and_the_root_holds_only_the_foundation():
    modules = _modules()
    assert all(_layer(m) in ALLOWED for m in modules)
    root = {p.name for p in PACKAGE.glob("*.py")}
    assert root == ROOT_MODULES, f"modules at the root of cje/ beyond the foundation: {sorted(root - ROOT_MODULES)}"


def test_imports_follow_the_layer_table():
    _, wrong = _graph()
    assert not wrong, "imports against the layer table (docs/architecture.md):\n" + "\n".join(wrong)


def test_no_import_cycle():
    cycles = _cycles(_graph()[0])
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    """The table and the cycle finder themselves: a planted upward import and a planted cycle are found."""
    assert "analysis" not in ALLOWED["stats"] and "stats" in ALLOWED["analysis"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_say_why():
    """An import inside a function is there for start-up time (or an optional part); it carries a comment."""
    modules = _modules()
    silent = []
    for name, path in modules.items():
        lines = path.read_text().splitlines()
        for target, line, inner in _imports(path, modules):
            if not inner:
                continue
            window = lines[max(0, line - 3): line + 1]
            if not any("#" in text for text in window):
                silent.append(f"{path.relative_to(REPO)}:{line} imports {target} inside a function")
    assert not silent, "function-level imports without a comment saying why:\n" + "\n".join(silent)


def test_llm_package_imports_only_its_hash_group():
    llm_group = ("cje.llm", "cje.errors", "cje.atomic", "cje.names")
    modules = _modules()
    outside = []
    for path in sorted((PACKAGE / "llm").rglob("*.py")):
        for module, line, _ in _imports(path, modules):
            if not any(module == m or module.startswith(m + ".") for m in llm_group):
                outside.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not outside, ("cje/llm imports modules outside the LLM code-hash group; add them "
                         "to CODE_GROUPS['llm'] in rules/common.smk:\n" + "\n".join(outside))


def test_code_groups_in_common_smk_match_this_test():
    text = (REPO / "rules" / "common.smk").read_text()
    assert '"llm": {"include": ["cje/llm/**/*.py", "cje/errors.py", "cje/atomic.py", "cje/names.py",' in text
    assert '"cje/__init__.py", "cje/cli/__init__.py", "cje/cli/llm.py", "cje/cli/local.py"]' in text
    assert '"exclude": ["cje/llm/", "cje/cli/llm.py", "cje/cli/local.py"]' in text
    # the LLM commands import only the LLM group (and the CLI's own entry point)
    modules = _modules()
    for name in ("cje.cli.llm", "cje.cli.local"):
        for module, line, _ in _imports(modules[name], modules):
            assert module.startswith(("cje.llm", "cje.errors", "cje.atomic", "cje.names", "cje.cli.llm")), \
                f"{name}:{line} imports {module}, outside the llm code-hash group"
