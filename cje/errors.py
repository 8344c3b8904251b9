"""Errors with enough context for a user to fix their input."""

from __future__ import annotations


class CJEError(Exception):
    """Base class for errors reported to the user as one line, exit code 2."""


class InputError(CJEError):
    """Bad input data: names the file, the 1-based line and the field.

    Parameters
    ----------
    message : what is wrong, in words a user understands.
    path : the file the problem is in (or None).
    line : 1-based line number in that file (or None).
    field : the JSON field concerned (or None).
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path) + (f":{self.line}" if self.line is not None else ""))
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ConfigError(CJEError):
    """Bad configuration or command-line option; names the key or flag."""

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        super().__init__(f"config key '{key}': {message}" if key else message)
