"""Validation of names that become file-system paths (policy names, provider names, ids).

A policy name turns into ``{policy}_responses.jsonl``, ``data/responses/{policy}.jsonl``
and similar paths. A name such as ``../../x`` would then read or write outside the
intended folder, so every such name goes through :func:`safe_component` first; a name
starting with '-' (``--help``) would be taken for a flag by every command that gets it.
A target policy's name goes through :func:`target_policy_name` as well: ``base`` is the
name of the base (logging) policy's row in every result, so a target of that name would
be confused with it.
"""

from __future__ import annotations

import re
from typing import NoReturn

from cje.errors import ConfigError, InputError

__all__ = ["safe_component", "target_policy_name", "SAFE_COMPONENT_PATTERN", "MAX_COMPONENT_LENGTH",
           "BASE_POLICY_NAME"]

# the same rule as a JSON-schema ``pattern`` (schemas/config.schema.yaml uses it for policy names)
SAFE_COMPONENT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # used with fullmatch: no trailing newline
# the base (logging) policy's name in results (metadata.comparisons, the tables): no target may take it
BASE_POLICY_NAME = "base"
# file names are limited to 255 bytes; leave room for suffixes such as "_responses.jsonl.cache.jsonl"
MAX_COMPONENT_LENGTH = 200


def _shown(name: str) -> str:
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject(problem: str, *, path: str | None, line: int | None, field: str | None,
            row: int | None) -> NoReturn:
    """Raise ``problem``: an InputError naming the place when the name came from a file, else a ConfigError."""
    if path is not None:
        raise InputError(problem, path=path, line=line, field=field, row=row)
    raise ConfigError(problem)


def safe_component(name: str, what: str, *, path: str | None = None, line: int | None = None,
                   field: str | None = None, row: int | None = None) -> str:
    """Return ``name`` unchanged if it is safe as one path component, else raise.

    Parameters
    ----------
    name : str
        The candidate (a policy name, provider name, id, ...).
    what : str
        What it is, in the user's words ("policy name", "config key 'policies'", ...);
        it starts the error message.
    path : str or None, default=None
        When the name came from a data file, the file; the error is then an
        :class:`InputError` naming ``file:line`` and the field.
    line : int or None, default=None
        The 1-based line where it was found.
    field : str or None, default=None
        The field it was found in.
    row : int or None, default=None
        The 0-based row where it was found (a Parquet file).

    Returns
    -------
    str
        ``name``, when it is a non-empty ``str`` of at most 200 characters matching
        ``[A-Za-z0-9_.-]+`` that does not start with a dot or a dash (so never ``.``,
        ``..``, a hidden file, a flag such as ``--help``, a separator or a NUL).

    Raises
    ------
    ConfigError
        Otherwise, with a one-line message.
    InputError
        Instead of ConfigError when ``path`` is given.
    """
    if not isinstance(name, str):
        problem = f"{what} must be a string, got {type(name).__name__} {_shown(str(name))}"
    elif not name:
        problem = f"{what} is empty"
    elif len(name) > MAX_COMPONENT_LENGTH:
        problem = f"{what} {_shown(name)} is longer than {MAX_COMPONENT_LENGTH} characters"
    elif not _SAFE.fullmatch(name):
        problem = (f"{what} {_shown(name)} is not allowed: use only letters, digits, '_', '.', '-' "
                   "and do not start with '.' or '-' (it becomes part of a file name and a command line)")
    else:
        return name
    _reject(problem, path=path, line=line, field=field, row=row)


def target_policy_name(name: str, what: str, *, path: str | None = None, line: int | None = None,
                       field: str | None = None, row: int | None = None) -> str:
    """Return ``name`` if it can name a target policy: :func:`safe_component`, and not ``base``.

    ``base`` (:data:`BASE_POLICY_NAME`) names the base (logging) policy's row in every
    result and comparison (``clone - base``); a target of that name would be read as it.

    Parameters
    ----------
    name : str
        The candidate.
    what : str
        What it is, in the user's words; it starts the error message.
    path : str or None, default=None
        When the name came from a data file, the file (an :class:`InputError` then names it).
    line : int or None, default=None
        The 1-based line where it was found.
    field : str or None, default=None
        The field it was found in.
    row : int or None, default=None
        The 0-based row where it was found (a Parquet file).

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    ConfigError
        ``name`` is unsafe (:func:`safe_component`) or is ``base``.
    InputError
        Instead of ConfigError when ``path`` is given.
    """
    safe_component(name, what, path=path, line=line, field=field, row=row)
    if name != BASE_POLICY_NAME:
        return name
    _reject(f"{what} {name!r} is reserved for the base (logging) policy in results and comparisons: "
            "rename the target policy", path=path, line=line, field=field, row=row)
