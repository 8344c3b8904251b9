"""Errors with enough context for a user to fix their input."""

from __future__ import annotations


class CJEError(Exception):
    """Base class for errors reported to the user as one line, exit code 2."""


class InputError(CJEError):
    """Bad input data: names the file, the 1-based line (JSONL) or 0-based row (Parquet), and the field.

    Parameters
    ----------
    message : str
        What is wrong, in words a user understands.
    path : str or None, default=None
        The file the problem is in.
    line : int or None, default=None
        1-based line number in that file (JSONL): ``path:line``.
    field : str or None, default=None
        The field concerned.
    row : int or None, default=None
        0-based row of a table without lines (Parquet), as a DataFrame numbers it:
        ``path row 3``.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 field: str | None = None, row: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        self.row = row
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path) + (f":{self.line}" if self.line is not None else "")
                         + (f" row {self.row}" if self.row is not None else ""))
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ConfigError(CJEError):
    """Bad configuration or command-line option; names the config key or the flag.

    A value that came from the command line is named by its flag, one from a config
    file by its key, so a user edits the right thing.

    Parameters
    ----------
    message : str
        What is wrong.
    key : str or None, default=None
        The config key; the message then reads ``config key '{key}': {message}``.
    flag : str or None, default=None
        The command-line flag instead (``--draws-per-prompt``); the message then reads
        ``option {flag}: {message}``.
    """

    def __init__(self, message: str, key: str | None = None, *, flag: str | None = None):
        self.key = key
        self.flag = flag
        if flag:
            text = f"option {flag}: {message}"
        else:
            text = f"config key '{key}': {message}" if key else message
        super().__init__(text)


class OutputError(CJEError):
    """The output folder cannot take the results (a file, read-only, unwritable); names the folder.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str or None, default=None
        The output folder; the message then reads ``output folder {path}: {message}``.
    """

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"output folder {path}: {message}" if path else message)


class OptionError(ConfigError):
    """A bad option value; names the command-line flag and the option/config key.

    ``OptionError("must be in (0, 1), got 1.5", flag="--level", key="level")`` reads
    ``option --level (level): must be in (0, 1), got 1.5``.

    Parameters
    ----------
    message : str
        What is wrong.
    flag : str
        The command-line flag.
    key : str
        The option / config key.
    """

    def __init__(self, message: str, flag: str, key: str):
        self.flag = flag
        CJEError.__init__(self, f"option {flag} ({key}): {message}")
        self.key = key


class NullEstimateError(CJEError):
    """A target policy has no finite estimate/CI and ``--refuse-unreliable`` was not given.

    Raised before anything is published: an exit code 0 with a null estimate would
    look complete to a pipeline.
    """


def json_error_text(exc: ValueError, *, line: bool = False) -> str:
    """A :class:`json.JSONDecodeError` in words: ``malformed JSON (Expecting value at column 1)``.

    ``json`` ends some messages with "at" ("Unterminated string starting at") and others
    not ("Expecting value"); either way the position is added once.

    Parameters
    ----------
    exc : json.JSONDecodeError
        The error (``msg``, ``lineno``, ``colno``).
    line : bool, default=False
        Also name the line (for a whole JSON file; a JSONL reader names its line itself).

    Returns
    -------
    str
        One line.
    """
    msg = getattr(exc, "msg", None) or str(exc)
    where = f"line {exc.lineno} column {exc.colno}" if line else f"column {getattr(exc, 'colno', '?')}"
    return f"malformed JSON ({msg.removesuffix(' at')} at {where})"
