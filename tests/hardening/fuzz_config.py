"""A seeded generator of malformed (and valid) workflow configs for the config fuzz (issue 19).

Each case starts from one of the shipped configs (``BASES``) and applies one mutation
drawn from the families below; the case says what a reader of it must do, worked out
here from the mutation (not from the schema the readers use):

* ``ok``: the same document (anchors and aliases, merge keys, reordered keys, flow style,
  JSON, BOM + CRLF, a small alias tree or shallow nesting inside ``extra_body``): the
  command must answer exactly as on the unmutated base;
* ``error``: a wrong type at a key (string for number, list for mapping, null, bool,
  huge ints, NaN, infinities), an unknown or typo'd key at any level, a deleted required
  key, a key that is not a string, a duplicate key, nesting past the bound, non-UTF-8
  bytes, an empty file, a top level that is a list or a scalar, several documents, a
  Python tag: exit 2, one line naming the file and the ``needles`` (the key path);
* ``bomb``: aliases expanding beyond the bound of :mod:`cje.llm.yamlfile`, or a recursive
  alias: exit 2 naming the file, fast and in bounded memory;
* ``any``: exit 0 or 2 (a negative number, a deleted optional key, a renamed policy):
  never a traceback, never a non-finite or negative estimate.

Everything is driven by one ``numpy.random.Generator``, so a seed reproduces every case.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from cje.llm.yamlfile import MAX_DEPTH

REPO = Path(__file__).resolve().parents[2]
BASES = ("config/config.yaml", "config/arena.yaml", ".test/config/config.yaml", ".test/config/analysis_only.yaml")

# keys whose value may be null
NULLABLE = {"prompts.n_samples", "analysis.dataset", "analysis.fresh_draws_dir"}
# mappings whose keys are names chosen by the user (any new name is a new entry, not a typo)
NAME_LEVELS = {"providers", "policies"}
# keys the schema requires in each kind of mapping (by the shape of their path)
REQUIRED = {"providers.*": ["kind"], "policies.*": ["provider", "model"], "judge": ["provider", "model"],
            "oracle": ["provider", "model"]}
WRONG = [("string", "fast"), ("numeric string", "12"), ("list", [1, "x"]), ("empty list", []),
         ("mapping", {"a": 1}), ("null", None), ("true", True), ("false", False), ("int 10**30", 10 ** 30),
         ("int 10**400", 10 ** 400), ("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf)]
NEGATIVE = [-1, -0.5, -1e300, -(2 ** 63)]
NEW_KEYS = ["tpyo", "batch_size", "temprature", "fresh_draw", "Kind", "tempér", "a.b", "x" * 300, "",
            "model ", "base_url"]
KEYS_NOT_STR = [("int", "1"), ("bool yes", "yes"), ("bool off", "off"), ("null", "null"), ("float", "0.5"),
                ("bool True", "True")]


@dataclass
class Case:
    """One generated config: its bytes, the base it came from and what a reader must do."""

    data: bytes
    base: str
    expect: str                                   # ok, error, bomb, any
    needles: list[str] = field(default_factory=list)
    mutation: str = ""
    same_doc: bool = False                        # loads to exactly the base's document


def base_texts() -> dict[str, str]:
    """The shipped configs, by path relative to the repository."""
    return {b: (REPO / b).read_text(encoding="utf-8") for b in BASES}


# --- paths in the loaded config --------------------------------------------------------------
def _key(path: list) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _walk(value, path=()) -> list[tuple[list, object]]:
    """Every (path, value) below the root, extra_body's inside included."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(([*path, k], v))
            out += _walk(v, [*path, k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append(([*path, i], v))
            out += _walk(v, [*path, i])
    return out


def _get(cfg, path):
    for part in path:
        cfg = cfg[part]
    return cfg


def _shape(path: list) -> str:
    """``policies.*`` for ``policies.base``: the kind of mapping a path is."""
    return ".".join("*" if i == 1 and path[0] in NAME_LEVELS else str(p) for i, p in enumerate(path))


def _in_free_form(path: list) -> bool:
    return "extra_body" in path[:-1]


def _class(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "str", list: "list", dict: "dict", type(None): "null"}[type(value)]


def _dump(cfg: dict) -> bytes:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).encode("utf-8")


# --- the families ----------------------------------------------------------------------------
def _wrong_type(rng, cfg) -> Case:
    paths = [(p, v) for p, v in _walk(cfg)]
    path, old = paths[int(rng.integers(0, len(paths)))]
    name, new = WRONG[int(rng.integers(0, len(WRONG)))]
    if rng.random() < 0.15 and _class(old) == "number":
        name, new = "negative", NEGATIVE[int(rng.integers(0, len(NEGATIVE)))]
    cfg = copy.deepcopy(cfg)
    parent = _get(cfg, path[:-1])
    parent[path[-1]] = copy.deepcopy(new)
    what = f"{_key(path)} = {name}"
    if isinstance(new, float) and not math.isfinite(new) or isinstance(new, int) and abs(new) >= 2 ** 63 \
            and name != "negative":
        return Case(_dump_special(cfg), "", "error", [_key(path)], what)  # anywhere, extra_body included
    if name == "negative" or _in_free_form(path) or path[-1] == "extra_body" and isinstance(new, dict):
        return Case(_dump_special(cfg), "", "any", [], what)
    if _key(path) in NULLABLE and (new is None or old is None) or _class(new) == _class(old):
        return Case(_dump_special(cfg), "", "any", [], what)
    return Case(_dump_special(cfg), "", "error", [_key(path)], what)


def _dump_special(cfg: dict) -> bytes:
    """YAML of ``cfg`` with NaN/inf spelled as YAML does and huge ints as digits (safe_dump does both)."""
    return _dump(cfg)


def _mappings(cfg) -> list[list]:
    """Paths of every mapping (the root is []), extra_body's inside left out."""
    out = [[]] if isinstance(cfg, dict) else []
    out += [p for p, v in _walk(cfg) if isinstance(v, dict) and "extra_body" not in p]
    return out


def _unknown_key(rng, cfg) -> Case:
    maps = _mappings(cfg)
    path = maps[int(rng.integers(0, len(maps)))]
    target = _get(cfg, path)
    name = NEW_KEYS[int(rng.integers(0, len(NEW_KEYS)))]
    if rng.random() < 0.5 and target:  # a typo of a key that is there: a letter dropped, doubled or swapped
        old = list(target)[int(rng.integers(0, len(target)))]
        if len(old) > 2:
            i = int(rng.integers(0, len(old) - 1))
            name = str(rng.choice([old[:i] + old[i + 1:], old[:i] + old[i] + old[i:],
                                   old[:i] + old[i + 1] + old[i] + old[i + 2:]]))
        if name == old or name in target:
            name = old + "_"
        cfg = copy.deepcopy(cfg)
        parent = _get(cfg, path)
        parent[name] = parent.pop(old)
        what = f"{_key([*path, old])} renamed {name!r}"
        if path and path[-1] in NAME_LEVELS and len(path) == 1:  # a renamed provider or policy: a new name
            return Case(_dump(cfg), "", "any", [], what)
        return Case(_dump(cfg), "", "error", [_key(path) or name], what)
    if name in target:
        name += "_x"
    cfg = copy.deepcopy(cfg)
    _get(cfg, path)[name] = 1
    return Case(_dump(cfg), "", "error", [n for n in (_key(path), name) if n], f"new key {_key([*path, name])!r}")


def _delete_key(rng, cfg) -> Case:
    paths = [p for p, _ in _walk(cfg) if isinstance(p[-1], str) and "extra_body" not in p]
    path = paths[int(rng.integers(0, len(paths)))]
    cfg = copy.deepcopy(cfg)
    parent = _get(cfg, path[:-1])
    kind = parent.get("kind") if isinstance(parent, dict) else None
    del parent[path[-1]]
    required = REQUIRED.get(_shape(path[:-1]), []) + (["base_url"] if kind == "openai" else [])
    if path[-1] in required:
        return Case(_dump(cfg), "", "error", [_key(path[:-1]) or "<top level>", f"'{path[-1]}'"],
                    f"delete required {_key(path)}")
    return Case(_dump(cfg), "", "any", [], f"delete {_key(path)}")


def _key_not_string(rng, text: str, cfg) -> Case:
    name, spelled = KEYS_NOT_STR[int(rng.integers(0, len(KEYS_NOT_STR)))]
    maps = _mappings(cfg)
    path = maps[int(rng.integers(0, len(maps)))]
    cfg = copy.deepcopy(cfg)
    marker = "zzmarkerzz"
    _get(cfg, path)[marker] = "x"
    body = _dump(cfg).decode().replace(f"{marker}:", f"{spelled}:", 1)
    return Case(body.encode(), "", "error", ["a key must be a string"], f"{name} key in {_key(path) or 'root'}")


# --- text-level families -----------------------------------------------------------------------
_LINE = re.compile(r"^( +)([A-Za-z_][A-Za-z0-9_]*): ([^&*|>{\[#\s][^#\n]*?)(\s+#.*)?$")


def _anchored_scalars(text: str) -> str | None:
    """Anchor the first of repeated ``key: value`` lines and alias the others."""
    lines = text.splitlines()
    seen: dict[tuple[str, str], int] = {}
    repeats = set()
    for i, ln in enumerate(lines):
        m = _LINE.match(ln)
        if m:
            kv = (m.group(2), m.group(3))
            if kv in seen:
                repeats.add(kv)
            seen.setdefault(kv, i)
    if not repeats:
        return None
    names = {kv: f"a{n}_{kv[0]}" for n, kv in enumerate(sorted(repeats))}
    for i, ln in enumerate(lines):
        m = _LINE.match(ln)
        if m and (m.group(2), m.group(3)) in repeats:
            kv = (m.group(2), m.group(3))
            value = f"&{names[kv]} {kv[1]}" if seen[kv] == i else f"*{names[kv]}"
            lines[i] = f"{m.group(1)}{kv[0]}: {value}"
    return "\n".join(lines) + "\n"


def _merge_keys(cfg: dict) -> str | None:
    """Later policies as ``<<: *first`` plus the keys in which they differ."""
    pols = cfg.get("policies") or {}
    names = list(pols)
    if len(names) < 2:
        return None
    first = pols[names[0]]
    rest = {k: v for k, v in cfg.items() if k != "policies"}
    out = ["policies:", f"  {json.dumps(names[0])}: &pol_first {json.dumps(first)}"]
    for name in names[1:]:
        pol = pols[name]
        if not set(first) <= set(pol):
            out.append(f"  {json.dumps(name)}: {json.dumps(pol)}")
            continue
        out.append(f"  {json.dumps(name)}:")
        out.append("    <<: *pol_first")
        out += [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in pol.items() if first.get(k) != v]
    return "\n".join(out) + "\n" + (_dump(rest).decode() if rest else "")


def _reordered(rng, cfg):
    if isinstance(cfg, dict):
        keys = list(cfg)
        rng.shuffle(keys)
        return {k: _reordered(rng, cfg[k]) for k in keys}
    return cfg


def _bomb_lines(levels: int, width: int, mapping: bool, indent: str) -> list[str]:
    if mapping:
        keys = [f"k{i}" for i in range(width)]
        lines = [f"{indent}m0: &m0 {{" + ", ".join(f"{c}: x" for c in keys) + "}"]
        lines += [f"{indent}m{i}: &m{i} {{" + ", ".join(f"{c}: *m{i - 1}" for c in keys) + "}"
                  for i in range(1, levels)]
    else:
        lines = [f"{indent}l0: &l0 [" + ", ".join(["x"] * width) + "]"]
        lines += [f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return lines


def _in_extra_body(cfg: dict, block: list[str]) -> str | None:
    """The config with ``block`` (lines indented for 6 spaces) as the first policy's extra_body."""
    pols = cfg.get("policies") or {}
    if not pols:
        return None
    name = next(iter(pols))
    body = copy.deepcopy(cfg)
    body["policies"][name]["extra_body"] = "zzmarkerzz"
    text = _dump(body).decode()
    return text.replace("extra_body: zzmarkerzz\n", "extra_body:\n" + "\n".join(block) + "\n", 1)


def _expansion(levels: int, width: int) -> int:
    return sum(width ** i for i in range(1, levels + 1))


def _aliases(rng, text: str, cfg: dict) -> Case:
    kind = int(rng.integers(0, 8))
    if kind == 0:
        new = _anchored_scalars(text)
        if new is not None:
            return Case(new.encode(), "", "ok", [], "anchored repeated scalars", same_doc=True)
    if kind == 1:
        new = _merge_keys(cfg)
        if new is not None:
            return Case(new.encode(), "", "ok", [], "policies as merge keys", same_doc=True)
    if kind in (2, 3):  # an alias tree in extra_body: small ones load, large ones are refused
        # well under (<= 11,110 values) or well over (>= 1.1 million) the loader's bound of 100,000
        levels, width = [(2, 3), (3, 10), (4, 10), (2, 100), (6, 10), (8, 9), (30, 2), (3, 100), (5, 40)][
            int(rng.integers(0, 9))]
        mapping = bool(rng.random() < 0.5)
        new = _in_extra_body(cfg, _bomb_lines(levels, width, mapping, " " * 6))
        if new is not None:
            what = f"alias tree {levels}x{width} ({'mappings' if mapping else 'lists'}) in extra_body"
            if _expansion(levels, width) <= 20_000:
                return Case(new.encode(), "", "ok", [], what)
            return Case(new.encode(), "", "bomb", ["aliases"], what)
    if kind == 4:  # a bomb where the schema would refuse it anyway: the loader must refuse first
        levels, width = [(9, 9), (12, 5), (40, 2), (4, 1000)][int(rng.integers(0, 4))]
        block = _bomb_lines(levels, width, bool(rng.random() < 0.5), "  ")
        return Case((text + "\nbomb:\n" + "\n".join(block) + "\n").encode(), "", "bomb", ["aliases"],
                    f"bomb {levels}x{width} at the top level")
    if kind == 5:  # many aliases of one scalar
        n = int(rng.choice([50, 1500, 20_000]))
        new = _in_extra_body(cfg, ["      one: &one x", "      many: [" + ", ".join(["*one"] * n) + "]"])
        if new is not None:
            return Case(new.encode(), "", "ok" if n <= 1000 else "bomb", [] if n <= 1000 else ["aliases"],
                        f"{n} aliases of a scalar")
    if kind == 6:
        block = str(rng.choice(["      again: &loop {a: *loop}", "      again: &loop [x, *loop]",
                                "      again: &loop {a: {b: [*loop]}}"]))
        new = _in_extra_body(cfg, [block])
        if new is not None:
            return Case(new.encode(), "", "bomb", ["recursive alias"], "recursive alias")
    if kind == 7:  # an alias used where a mapping is expected: a benign reuse of the first provider
        provs = cfg.get("providers") or {}
        if provs:
            name = next(iter(provs))
            body = _dump(cfg).decode()
            if f"\n  {name}:\n" in body:
                body = body.replace(f"\n  {name}:\n", f"\n  {name}: &prov\n", 1)
                return Case((body + "\nzz_alias_user: *prov\n").encode(), "", "error", ["zz_alias_user"],
                        "a provider alias under an unknown top-level key")
    new = _dump(_reordered(rng, cfg))
    return Case(new, "", "ok", [], "keys reordered", same_doc=True)


def _duplicate(rng, text: str) -> Case:
    lines = text.splitlines()
    candidates = [i for i, ln in enumerate(lines) if re.match(r"^ *[A-Za-z_][A-Za-z0-9_]*: *[^ #\n]", ln)]
    if rng.random() < 0.2 or not candidates:  # a whole section twice
        sections = [ln[:-1] for ln in lines if re.match(r"^[a-z_]+:$", ln)]
        if sections:
            name = str(rng.choice(sections))
            return Case((text + f"\n{name}:\n  x: 1\n").encode(), "", "error", ["given twice", f"'{name}'"],
                        f"section {name} twice")
    i = int(candidates[int(rng.integers(0, len(candidates)))])
    m = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):", lines[i])
    indent, key = m.group(1), m.group(2)
    value = str(rng.choice(["1", "same", "null", "[1]"]))
    # after the last line of this key's block, at the same indent
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or lines[j].startswith(indent + " ")):
        j += 1
    lines.insert(j, f"{indent}{key}: {value}")
    return Case(("\n".join(lines) + "\n").encode(), "", "error", ["given twice", f"'{key}'"],
                f"duplicate key {key} (line {i + 1})")


def _nesting(rng, cfg: dict) -> Case:
    depth = int(rng.choice([3, 20, MAX_DEPTH - 4, MAX_DEPTH - 3, 100, 900, 5000]))
    opener, closer = (("{x: ", "}") if rng.random() < 0.5 else ("[", "]"))
    inner = "1" if opener == "{x: " else ""
    height = depth + (1 if inner else 0)     # the innermost scalar is a level of its own
    new = _in_extra_body(cfg, ["      x: " + opener * depth + inner + closer * depth])
    if new is None:
        return Case(_dump(cfg), "", "ok", [], "no policy to nest in", same_doc=True)
    # root > policies > name > extra_body > x's value: 4 levels above the nested value
    ok = 4 + height <= MAX_DEPTH
    return Case(new.encode(), "", "ok" if ok else "error", [] if ok else ["nested deeper"],
                f"nesting {depth} in extra_body")


def _bytes(rng, text: str) -> Case:
    data = text.encode("utf-8")
    kind = int(rng.integers(0, 14))
    if kind == 0:
        return Case(b"", "", "error", ["must hold a mapping"], "empty file")
    if kind == 1:
        return Case(b"# only a comment\n\n", "", "error", ["must hold a mapping"], "only comments")
    if kind == 2:
        return Case(str(rng.choice(["- prompts\n- policies\n", "[1, 2]\n"])).encode(), "", "error",
                    ["must hold a mapping"], "top level list")
    if kind == 3:
        return Case(str(rng.choice(["42\n", "just text\n", "null\n", "true\n", "'quoted'\n"])).encode(), "",
                    "error", ["must hold a mapping"], "top level scalar")
    if kind == 4:
        pos = data.find(b"\n", len(data) // 3)
        return Case(data[:pos] + b"\n# caf\xe9\n" + data[pos:], "", "error", ["cannot be read"],
                    "latin-1 byte in a comment")
    if kind == 5:
        return Case(text.encode("utf-16"), "", "error", ["cannot be read"], "utf-16")
    if kind == 6:
        return Case(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"), "", "ok", [], "bom+crlf", same_doc=True)
    if kind == 7:
        pos = data.find(b"\n", len(data) // 2)
        return Case(data[:pos] + b"\x00" + data[pos:], "", "error", ["not valid YAML"], "NUL byte")
    if kind == 8:
        return Case(data + b"\n---\nprompts: {}\n", "", "error", ["not valid YAML"], "two documents")
    if kind == 9:
        return Case(data.replace(b"\n  ", b"\n\t", 1), "", "error", ["not valid YAML"], "a tab indent")
    if kind == 10:
        return Case(data + b"\nextra: !!python/object/apply:os.system [\"touch PWNED\"]\n", "", "error",
                    ["not valid YAML"], "python tag")
    if kind == 11:
        return Case(re.sub(rb"(\n *seed:) \d+", rb"\1 2024-01-01", data, count=1) if b"seed:" in data else b"", "",
                    "error", ["must hold a mapping"] if b"seed:" not in data else ["seed"], "a date")
    if kind == 12:
        cut = int(rng.integers(0, max(len(data), 1)))
        return Case(data[:cut], "", "any", [], f"truncated at {cut}")
    return Case(data + b"\n" + b"#" * 200_000 + b"\n", "", "ok", [], "a 200 kB comment", same_doc=True)


def generate(rng: np.random.Generator, texts: dict[str, str]) -> Case:
    """One case: a shipped config, mutated by one family."""
    bases = list(texts)  # BASES, or the ones given
    base = bases[int(rng.integers(0, len(bases)))]
    text = texts[base]
    cfg = yaml.safe_load(text)
    family = rng.random()
    if family < 0.25:
        case = _wrong_type(rng, cfg)
    elif family < 0.40:
        case = _unknown_key(rng, cfg)
    elif family < 0.50:
        case = _delete_key(rng, cfg)
    elif family < 0.55:
        case = _key_not_string(rng, text, cfg)
    elif family < 0.72:
        case = _aliases(rng, text, cfg)
    elif family < 0.79:
        case = _duplicate(rng, text)
    elif family < 0.86:
        case = _nesting(rng, cfg)
    else:
        case = _bytes(rng, text)
    case.base = base
    if case.same_doc:  # the same document, or the generator is wrong
        assert yaml.safe_load(case.data.decode("utf-8-sig")) == cfg, case.mutation
    return case
