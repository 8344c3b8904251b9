"""Secret scrubbing: no API key, whole or in part, reaches an error, a log or the call log.

Two rules:

1. **Fragments of a registered secret.** Every run of characters that is a
   substring of a registered key and at least ``MIN_FRAGMENT`` (8) characters
   long is replaced by ``***``. A provider echoing the key minus its last 4
   characters, or its middle, is therefore scrubbed as well. Implementation: the
   set of the key's 8-character windows; a text window found in the set marks its
   8 characters; marked runs are replaced (linear in the text length).
2. **Values that look like keys** (:func:`scrub_key_like`, applied to error text
   from providers and to config values that should have been a variable *name*):
   ``Bearer <token>``, ``sk-...`` / ``fw_...``-style prefixed tokens, ``api_key=...``
   assignments, and any run of 24+ letters/digits/``-_`` that mixes letters and
   digits (hex keys such as Together's). This rule is not applied to structured
   fields the stages write themselves (prompt ids may be long hex ids).

``Scrubber`` holds the secrets of one process (``add``) and applies rule 1 to any
text, rule 2 only where asked (``scrub(text, key_like=True)``).

URLs (:func:`redact_url`) lose what may be a secret: the user and password
(``http://***@host/...``) and the value of every query parameter
(``?api-version=***``). Rule 2 applies it, and so does the filter that
:func:`scrub_http_logs` puts on the loggers of the HTTP stack (``httpx``, ``httpcore``,
``openai``; their per-request lines are shown with ``cje -v`` only).
"""

from __future__ import annotations

import logging
import re

MIN_FRAGMENT = 8
MASK = "***"
_KEY_LIKE = [
    re.compile(r"(?i)\bbearer\s+[^\s\"',;]+"),
    re.compile(r"\b(?:sk|pk|rk|fw|gsk|xai|hf|key|api)[-_][A-Za-z0-9_-]{12,}"),
    re.compile(r"\bAIza[A-Za-z0-9_-]{20,}"),
    re.compile(r"(?i)\b(?:api[-_ ]?key|access[-_ ]?token|secret|token|password|authorization)"
               r"(\"?\s*[:=]\s*\"?)[^\s\"',;]{6,}"),
    re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z_-]*\d)(?=[0-9_-]*[A-Za-z])[A-Za-z0-9_-]{24,}"),
]
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# scheme://[userinfo@]host-and-path[?query]; stops at whitespace, quotes and brackets
_URL = re.compile(r"(?i)\b((?:https?|wss?)://)([^\s/?#\"'<>]*@)?([^\s?#\"'<>]*)(\?[^\s#\"'<>]*)?")
# a path's query (``/v1/chat/completions?api-version=...``, as a provider may echo it)
_PATH_QUERY = re.compile(r"(?<![\w:/.-])(/[^\s?#\"'<>]*)(\?[^\s#\"'<>]*)")
# the loggers of the HTTP stack the client runs on (httpx2/httpcore2: the same packages renamed)
HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai")


def redact_url(text: str) -> str:
    """``text`` with the credentials and query values of every URL in it replaced by ``***``.

    Parameters
    ----------
    text : str
        Any text (a URL, a log line, an error message).

    Returns
    -------
    str
        Each ``user:password@`` becomes ``***@``; each query parameter keeps its name and
        loses its value (``?api-version=***&key=***``; a parameter without ``=`` becomes
        ``***``), also after a bare path (``/v1/chat/completions?key=***``).

    Examples
    --------
    >>> redact_url("POST http://u:pw@h:8/v1/chat/completions?api-version=2024-06-01 200")
    'POST http://***@h:8/v1/chat/completions?api-version=*** 200'
    """
    def masked(query: str | None) -> str:
        if not query:
            return query or ""
        return "?" + "&".join((part.split("=", 1)[0] + "=" + MASK) if "=" in part else
                              (MASK if part else part) for part in query[1:].split("&"))

    text = _URL.sub(lambda m: m.group(1) + (MASK + "@" if m.group(2) else "") + m.group(3)
                    + masked(m.group(4)), text)
    return _PATH_QUERY.sub(lambda m: m.group(1) + masked(m.group(2)), text)


def scrub_key_like(text: str) -> str:
    """Replace every value of ``text`` that looks like an API key by ``***`` (rule 2).

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    str
        For ``api_key=VALUE``-style assignments the name and separator are kept; URLs lose
        their credentials and query values (:func:`redact_url`).
    """
    text = redact_url(text)
    for pattern in _KEY_LIKE:
        if pattern.groups:  # keep the name and separator of "api_key=VALUE"
            text = pattern.sub(lambda m: m.group(0)[:m.end(1) - m.start(0)] + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


def looks_like_key(value: str) -> bool:
    """True when ``value`` would be scrubbed by rule 2 (a key-like token).

    Parameters
    ----------
    value : str
        A value.

    Returns
    -------
    bool
        Whether the value looks like an API key.
    """
    return scrub_key_like(value) != value


def is_env_var_name(value: str) -> bool:
    """True for a plausible environment-variable name (``[A-Za-z_][A-Za-z0-9_]*``, not key-like).

    E.g. ``FIREWORKS_API_KEY``; a pasted key such as ``fw_3ZR...`` or ``sk-...`` is not.

    Parameters
    ----------
    value : str
        A value.

    Returns
    -------
    bool
        Whether the value is a plausible variable name.
    """
    return bool(ENV_NAME.fullmatch(value)) and not looks_like_key(value) and not (
        len(value) >= 20 and any(c.isdigit() for c in value) and any(c.islower() for c in value))


class Scrubber:
    """The secrets of this process and the function that removes them from text."""

    def __init__(self) -> None:
        self._windows: set[str] = set()
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        """Register ``secret``; secrets shorter than 8 characters are matched whole only.

        Parameters
        ----------
        secret : str or None
            A secret (None or empty: ignored).
        """
        if not secret:
            return
        self._secrets.add(secret)
        for i in range(len(secret) - MIN_FRAGMENT + 1):
            self._windows.add(secret[i:i + MIN_FRAGMENT])

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def scrub(self, text: str, key_like: bool = False) -> str:
        """``text`` with every registered-secret fragment of >= 8 characters replaced by ``***``.

        Parameters
        ----------
        text : str
            Any text (other values are converted with ``str``).
        key_like : bool, default=False
            Also replace every key-looking value (rule 2).

        Returns
        -------
        str
            The scrubbed text.
        """
        if not isinstance(text, str):
            text = str(text)
        for s in self._secrets:  # short secrets (< 8 chars) can only be matched whole
            if len(s) < MIN_FRAGMENT and s in text:
                text = text.replace(s, MASK)
        if self._windows and len(text) >= MIN_FRAGMENT:
            marked = bytearray(len(text))
            hit = False
            for i in range(len(text) - MIN_FRAGMENT + 1):
                if text[i:i + MIN_FRAGMENT] in self._windows:
                    marked[i:i + MIN_FRAGMENT] = b"\1" * MIN_FRAGMENT
                    hit = True
            if hit:
                out, i = [], 0
                while i < len(text):
                    if marked[i]:
                        while i < len(text) and marked[i]:
                            i += 1
                        out.append(MASK)
                    else:
                        out.append(text[i])
                        i += 1
                text = "".join(out)
        return scrub_key_like(text) if key_like else text


class _LogScrubFilter(logging.Filter):
    """Rewrites a log record's message without URL secrets and registered secrets."""

    def __init__(self, scrubber: Scrubber):
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: the handler reports it
            return True
        clean = self.scrubber.scrub(redact_url(message))
        if clean != message:
            record.msg, record.args = clean, None
        return True


_HTTP_LOG_SECRETS = Scrubber()
_HTTP_LOG_FILTER = _LogScrubFilter(_HTTP_LOG_SECRETS)


def scrub_http_logs(*secrets: str | None) -> None:
    """Keep secrets out of the log lines of the HTTP stack (``HTTP_LOGGERS`` and their children).

    Installs (once) a filter on every existing logger of ``httpx``, ``httpcore`` and
    ``openai`` (and their renamed ``httpx2``/``httpcore2``) that removes URL credentials and
    query values (:func:`redact_url`) and every fragment of the registered ``secrets`` from
    each record's message. Call it after the client library is imported (its loggers exist).

    Parameters
    ----------
    *secrets : str or None
        Values to scrub from every line (e.g. the API key); None and empty ones are ignored.
    """
    for secret in secrets:
        _HTTP_LOG_SECRETS.add(secret)
    names = {n for n in logging.root.manager.loggerDict if n.split(".")[0] in HTTP_LOGGERS}
    for name in sorted(names | set(HTTP_LOGGERS)):
        logger = logging.getLogger(name)
        if _HTTP_LOG_FILTER not in logger.filters:
            logger.addFilter(_HTTP_LOG_FILTER)


def set_http_log_level(verbose: bool) -> None:
    """Per-request lines of the HTTP stack only when ``verbose`` (``cje -v``).

    Sets the ``HTTP_LOGGERS`` to WARNING, or back to NOTSET (inherit the root level) when
    ``verbose``: without it one ``HTTP Request: POST ...`` line per call reaches stderr.

    Parameters
    ----------
    verbose : bool
        Show the HTTP stack's INFO and DEBUG lines.
    """
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
