"""The strict JSON schema of the workflow config, for every reader of it (workflow and commands).

The schema is ``schemas/config.schema.yaml`` (``cje/llm/config.schema.yaml`` is a link to
it, so an installed package carries it). The workflow checks a config against it when
the DAG is built (rules/config.smk); ``cje cost --estimate`` checks the same way, so a
top-level typo (``fresh_draw:``) or a value of the wrong type (``n_rubric_samples:
"three"``) stops both, naming the key, instead of being priced with defaults.

Before the schema, :func:`value_error_lines` walks the whole config (``extra_body``
included) for what JSON Schema lets through but no reader can use: NaN and infinities
(every bound compares False with NaN, so ``temperature: .nan`` passed ``maximum: 2`` and
``cost_per_million_input_tokens: .inf`` priced a run at ``$inf``), integers beyond 64 bits
(an ``OverflowError`` traceback in the cost estimate), keys that are not strings (``no:``
and ``1:`` are a boolean and a number in YAML) and values that are not JSON (dates, sets,
bytes).
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cje.errors import ConfigError

__all__ = ["SCHEMA_PATH", "REMOVED_KEYS", "load_schema", "config_key", "value_error_lines",
           "schema_error_lines", "check_config_schema"]

# the integers every reader (numpy seeds, float arithmetic, JSON consumers) can take
MAX_INT = 2 ** 63 - 1

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

# Keys of earlier versions, and what replaced them.
REMOVED_KEYS = {
    "execution.batch_size": "answers are now cached one per request as they arrive "
                            "(execution.request_cache_dir), so there is no flush interval: delete the key",
}


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The workflow config's JSON schema (draft 2020-12), read once.

    Returns
    -------
    dict
        The schema.
    """
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def config_key(path: Any) -> str:
    """Dotted config key (``analysis.oracle_coverages[2]``) from a jsonschema error path.

    Parameters
    ----------
    path : iterable of str or int
        The path of keys and list indices.

    Returns
    -------
    str
        The key, or ``<top level>`` for the empty path.
    """
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "<top level>"


def _unknown_keys(error: jsonschema.ValidationError) -> list[str]:
    """Lines naming each unknown key of an additionalProperties error, with a suggestion."""
    known = sorted(error.schema.get("properties", {}))
    lines = []
    for name in sorted(set(error.instance) - set(known)):
        key = config_key([*error.absolute_path, name])
        if key in REMOVED_KEYS:
            lines.append(f"config key '{key}': no longer used: {REMOVED_KEYS[key]}")
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        lines.append(f"config key '{key}': unknown key ({hint}known: {', '.join(known)})")
    return lines


def _value_problem(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or isinstance(value, (str, list, dict)):
        return None
    if isinstance(value, int):
        return None if -MAX_INT - 1 <= value <= MAX_INT else f"an integer of {len(str(abs(value)))} digits is " \
                                                                   f"out of range (at most {MAX_INT:,} in size)"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"must be a finite number, got {value}"
    return (f"must be a string, number, boolean, null, list or mapping, got {type(value).__name__} "
            f"{str(value)[:40]!r} (quote it to make it a string)")


def value_error_lines(cfg: Any) -> list[str]:
    """Values and keys of ``cfg`` that no reader can use, one line each (module docstring).

    Parameters
    ----------
    cfg : object
        The config as read from YAML.

    Returns
    -------
    list of str
        ``config key 'judge.temperature': must be a finite number, got nan`` lines, in
        document order; empty when every key is a string and every value a finite JSON value.
    """
    lines: list[str] = []
    stack: list[tuple[list, Any]] = [([], cfg)]
    while stack and len(lines) < 100:
        where, value = stack.pop()
        problem = _value_problem(value)
        if problem:
            lines.append(f"config key '{config_key(where)}': {problem}")
        elif isinstance(value, dict):
            for k in value:
                if not isinstance(k, str):
                    shown = {True: "true", False: "false", None: "null"}.get(k, repr(k)) \
                        if isinstance(k, (bool, type(None))) else repr(k)
                    lines.append(f"config key '{config_key([*where, shown])}': a key must be a string, got "
                                 f"{type(k).__name__} {shown} (YAML reads yes/no/on/off/null and numbers as "
                                 f"such: quote the key)")
            stack.extend(([*where, k], v) for k, v in reversed(list(value.items())) if isinstance(k, str))
        elif isinstance(value, list):
            stack.extend(([*where, i], v) for i, v in reversed(list(enumerate(value))))
    return lines


def schema_error_lines(cfg: Any, schema: dict | None = None) -> list[str]:
    """Every way ``cfg`` breaks the schema, one line per bad key, sorted by key.

    Parameters
    ----------
    cfg : object
        The config as read from YAML.
    schema : dict or None, default=None
        The schema (default :func:`load_schema`).

    Returns
    -------
    list of str
        ``config key 'judge.n_rubric_samples': ...`` lines; unknown keys name the closest
        known one; empty when the config is valid. Keys that are not strings and values no
        reader can use (:func:`value_error_lines`) are reported alone, before the schema.
    """
    bad_values = value_error_lines(cfg)
    if bad_values:  # the schema's own checks would miss them, or raise on a key that is not a string
        return bad_values
    validator = jsonschema.Draft202012Validator(load_schema() if schema is None else schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    lines: list[str] = []
    for e in errors:
        if e.validator == "additionalProperties" and e.validator_value is False:
            lines += _unknown_keys(e)
        else:
            lines.append(f"config key '{config_key(e.absolute_path)}': {e.message}")
    return lines


def check_config_schema(cfg: Any, path: str | None = None) -> None:
    """Raise a one-line :class:`ConfigError` when ``cfg`` breaks the workflow's schema.

    Parameters
    ----------
    cfg : object
        The config as read from YAML.
    path : str or None, default=None
        The config file, named in the error.

    Raises
    ------
    ConfigError
        The first bad key (by key order) and how many more there are.
    """
    lines = schema_error_lines(cfg)
    if lines:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        where = f"invalid workflow config {path}: " if path else "invalid workflow config: "
        raise ConfigError(f"{where}{lines[0]}{more}")
