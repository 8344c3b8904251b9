"""The one YAML reader of workflow configs: safe, and bounded against alias bombs.

YAML aliases (``*a``) make a document a graph: PyYAML builds each anchored value once and
shares it, so loading a "billion laughs" file is fast and small, and the blow-up comes
later, from whatever walks the config as a tree (schema validation, Snakemake merging
``--configfile`` into its config, a deep copy, writing it out): a 1 kB file with 8 nested
levels of 9 aliases is 43 million values, and ``snakemake -n`` ran out of memory on one.
:func:`load_yaml` composes the document, counts the values it stands for when every alias
is expanded (one pass over the graph, memoised per anchored node) and refuses a document
whose aliases add more than :data:`MAX_ALIAS_EXPANSION` values, or that uses more than
:data:`MAX_ALIASES` aliases, before anything is built. Everything that reads a config
goes through it: :func:`cje.llm.config.load_config` (every ``cje`` command with
``--config``, ``cje cost --estimate``) and the workflow (``rules/config.smk``, before the
schema check walks the config).

The same pass refuses two more things a config never needs and a reader would trip on: a
mapping that gives one key twice (YAML silently keeps the last value, so the first one a
user reads is not what runs) and nesting deeper than :data:`MAX_DEPTH` (the YAML reader,
``json.dumps`` of a fingerprint and Snakemake all recurse: thousands of ``[`` were a
``RecursionError`` traceback).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from cje.errors import ConfigError

__all__ = ["load_yaml", "MAX_ALIASES", "MAX_ALIAS_EXPANSION", "MAX_DEPTH"]

# A config uses aliases to share a block between a few policies (extra_body, a provider):
# tens of aliases expanding to hundreds of values. These bounds are far above that and far
# below anything that costs memory.
MAX_ALIASES = 1_000
MAX_ALIAS_EXPANSION = 100_000
# A config is 4-5 levels deep (policies.<name>.extra_body.<field>...); far below Python's
# recursion limit for every reader.
MAX_DEPTH = 64


def load_yaml(path: str | os.PathLike, text: str | None = None) -> object:
    """Read one YAML document with ``yaml.SafeLoader``, refusing alias expansion beyond the bounds.

    Parameters
    ----------
    path : str or PathLike
        The file (named in every error).
    text : str or None, default=None
        Its content, when already read.

    Returns
    -------
    object
        The document (None for an empty file).

    Raises
    ------
    ConfigError
        One line naming the file: it does not exist or cannot be read, is not valid YAML,
        or its aliases expand beyond :data:`MAX_ALIASES` / :data:`MAX_ALIAS_EXPANSION`,
        a mapping gives a key twice, or it nests deeper than :data:`MAX_DEPTH`.
    """
    p = Path(path)
    if text is None:
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {p} cannot be read: {exc}") from None
    try:  # the reader checks every character first: a NUL or other control byte raises here
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, p)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # the reader recurses per level: far deeper than MAX_DEPTH
        raise ConfigError(f"config file {p}: nested deeper than the limit of {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def _check_graph(root: yaml.Node, path: Path) -> None:
    """Refuse a composed document whose aliases stand for too many values, that gives a
    mapping key twice or nests too deeply (module docstring).

    The composer returns an alias as the anchored node itself, so a node reached twice is an
    alias use; the expanded size and depth of each node are computed once (iteratively: no
    recursion limit on deep documents) and a cycle (a recursive alias) is refused too."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    visits: dict[int, int] = {}
    distinct = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if height[key] > MAX_DEPTH:
                raise ConfigError(f"config file {path}: nested deeper than the limit of {MAX_DEPTH} levels "
                                  f"near line {node.start_mark.line + 1}")
            continue
        visits[key] = visits.get(key, 0) + 1
        if key in on_path:
            raise ConfigError(f"config file {path}: a recursive alias (an anchor used inside itself) "
                              f"near line {node.start_mark.line + 1}")
        if key in size:
            continue
        distinct += 1
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node, path)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node))
    aliases = sum(v - 1 for v in visits.values())
    added = size[id(root)] - distinct
    if aliases > MAX_ALIASES or added > MAX_ALIAS_EXPANSION:
        raise ConfigError(f"config file {path}: its YAML aliases (*name) expand to {added:,} more values "
                          f"through {aliases:,} alias uses, more than the limit of {MAX_ALIAS_EXPANSION:,} "
                          f"values / {MAX_ALIASES:,} uses: write the values out or use fewer nested aliases")


def _check_duplicate_keys(node: yaml.MappingNode, path: Path) -> None:
    """Refuse a mapping that gives a (scalar) key twice: YAML would keep the last value silently.

    Merge keys (``<<: *shared``) may repeat; a key is its resolved tag and text, so ``1`` and
    ``"1"`` differ as they do once loaded."""
    seen: set[tuple[str, str]] = set()
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            continue
        if (k.tag, k.value) in seen:
            raise ConfigError(f"config file {path}: key '{k.value}' is given twice in one mapping (line "
                              f"{k.start_mark.line + 1}); YAML would keep only the last value: delete one")
        seen.add((k.tag, k.value))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for kv in node.value for x in kv]
    return []
