"""Typed views of the workflow config's LLM sections (providers, policies, judge, oracle).

The workflow config (``config/config.yaml``, shape in docs/contracts.md) is a plain
dict; the LLM stages read it through the dataclasses here so that every key has a
sensible default and a wrong key or type is reported by name (``ConfigError``).
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cje.errors import ConfigError
from cje.llm.scrub import ENV_NAME, is_env_var_name, redact_url
from cje.llm.yamlfile import load_yaml
from cje.names import BASE_POLICY_NAME, safe_component, target_policy_name

PROVIDER_KINDS = ("local", "openai")
CHAT_TEMPLATES = ("gemma", "llama3", "chatml", "none")
SCORER_METHODS = ("structured", "parse", "yes_no_logprob")
MAX_FAILED_SHARE = 0.5  # execution.max_failed_share: a stage with more failed rows exits non-zero


@dataclass(frozen=True)
class ProviderConfig:
    """How to reach one OpenAI-compatible endpoint and how hard to push it.

    ``kind: local`` means the embedded llama.cpp server that each stage starts and
    stops (``cje.llm.local.server``); ``kind: openai`` is any OpenAI-compatible URL.
    Rate limits of ``None`` mean unlimited. Costs are USD per million tokens.
    Retries (``cje.llm.client.retry``): ``retry_backoff_s`` is the first backoff ceiling
    (doubled per retry, capped at ``retry_backoff_max_s``, full jitter);
    ``max_retries`` bounds transient failures (5xx, resets, malformed answers),
    ``max_timeouts`` timeouts, ``rate_limit_budget_s`` the total waiting on HTTP 429
    per call; a ``Retry-After`` is honoured up to ``retry_after_max_s``. Rate limits
    hold in every sliding window of ``rate_limit_window_s`` seconds (default 60:
    requests/tokens *per minute*).

    Parameters
    ----------
    name : str
        The provider's key in ``providers``.
    kind : {'openai', 'local'}, default='openai'
        An OpenAI-compatible URL, or the embedded llama.cpp server.
    base_url : str or None, default=None
        The endpoint (required for ``openai``).
    api_key_env : str or None, default=None
        The NAME of the environment variable holding the key (None: keyless).
    model_package : str or None, default=None
        The package holding the local model file.
    n_threads : int, default=1
        Threads of the local server.
    max_concurrency : int, default=8
        Requests in flight at once.
    requests_per_minute, tokens_per_minute : float or None, default=None
        Rate limits per window (None = unlimited).
    timeout_s : float, default=120.0
        Timeout of one request.
    max_retries : int, default=6
        Retries of transient failures.
    retry_backoff_s : float, default=1.0
        The first backoff ceiling.
    retry_backoff_max_s : float, default=60.0
        The cap of the backoff ceiling.
    retry_after_max_s : float, default=120.0
        The longest ``Retry-After`` honoured.
    rate_limit_budget_s : float, default=1800.0
        Total waiting on HTTP 429 per call.
    max_timeouts : int, default=2
        Timeouts allowed per call.
    rate_limit_window_s : float, default=60.0
        The sliding window of the rate limits.
    cost_per_million_input_tokens, cost_per_million_output_tokens : float, default=0.0
        Prices in USD.
    """

    name: str
    kind: str = "openai"
    base_url: str | None = None
    api_key_env: str | None = None
    model_package: str | None = None
    n_threads: int = 1
    max_concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float = 120.0
    max_retries: int = 6
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 60.0
    retry_after_max_s: float = 120.0
    rate_limit_budget_s: float = 1800.0
    max_timeouts: int = 2
    rate_limit_window_s: float = 60.0
    cost_per_million_input_tokens: float = 0.0
    cost_per_million_output_tokens: float = 0.0

    def api_key(self) -> str:
        """Return the API key from the environment variable ``api_key_env``.

        Local servers and keyless endpoints (``api_key_env`` unset) get a placeholder.

        Returns
        -------
        str
            The key (``"not-needed"`` for local and keyless providers).

        Raises
        ------
        ConfigError
            Naming the variable when it is unset or its value is not a well-formed key
            (:func:`check_api_key_value`), or when ``api_key_env`` is not a variable name.
        """
        if self.kind == "local" or not self.api_key_env:
            return "not-needed"
        check_api_key_env(self.name, self.api_key_env)
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"environment variable {self.api_key_env} is not set "
                              f"(the API key of provider '{self.name}')",
                              key=f"providers.{self.name}.api_key_env")
        check_api_key_value(self.name, self.api_key_env, key)
        return key

    def check_api_key_if_set(self) -> None:
        """Check the key's value now, if its variable is set (an unset one is reported later).

        Called when a stage's client is built, before any request: a key that cannot be
        sent in an HTTP header (a trailing newline, a space, a curly quote) is a config
        error at once instead of one failed row per request. An unset variable is still
        reported only at the first request that is not in the request cache.

        Raises
        ------
        ConfigError
            The variable holds a malformed key (named; the key is never shown).
        """
        if self.kind == "local" or not self.api_key_env:
            return
        key = os.environ.get(self.api_key_env)
        if key:
            check_api_key_value(self.name, self.api_key_env, key)


@dataclass(frozen=True)
class PolicyConfig:
    """One policy: provider + model + system prompt + sampling parameters.

    ``chat_template`` other than ``none`` means the stage renders the chat itself
    (``cje.llm.templates.render_prompt``) and samples through ``/v1/completions``;
    ``none`` uses ``/v1/chat/completions`` and lets the provider apply its template.
    ``top_p`` defaults to 1 (a value < 1 truncates sampling: the log-prob stage then
    refuses the policy). On local servers top_k 0, min_p 0, repeat_penalty 1 are
    always sent; ``extra_body`` adds other provider-specific fields but cannot
    override those.

    Parameters
    ----------
    name : str
        The policy's key in ``policies`` (it becomes file names).
    provider : str
        A key of ``providers``.
    model : str
        The model name sent to the provider.
    chat_template : {'none', 'gemma', 'llama3', 'chatml'}, default='none'
        Who renders the chat.
    system_prompt : str, default=''
        The system prompt.
    temperature : float, default=1.0
        Sampling temperature.
    max_tokens : int, default=256
        Longest response.
    top_p : float, default=1.0
        Nucleus sampling.
    extra_body : dict
        Other provider-specific request fields.
    """

    name: str
    provider: str
    model: str
    chat_template: str = "none"
    system_prompt: str = ""
    temperature: float = 1.0
    max_tokens: int = 256
    top_p: float = 1.0
    extra_body: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 (first 16 hex) of everything that changes what is sampled.

        Returns
        -------
        str
            16 hex characters.
        """
        return _hash(asdict(self))


@dataclass(frozen=True)
class ScorerConfig:
    """The judge or the oracle: a scoring procedure applied to (prompt, response).

    ``method``: ``structured`` (chat + JSON-schema response_format), ``parse``
    (chat + robust regex parsing) or ``yes_no_logprob`` (completions, next-token
    P(" Yes") / (P(" Yes") + P(" No"))). ``n_rubric_samples`` variants of the rubric
    are averaged (the oracle's extra cost). ``parse_retries``: how often an
    unparseable answer is asked again before it is stored as an error.
    ``temperature`` / ``max_tokens`` of chat methods are sent only when set (reasoning
    models such as gpt-5 refuse both); ``yes_no_logprob`` always asks for one token
    at temperature 0.

    Parameters
    ----------
    role : {'judge', 'oracle'}
        The config section.
    provider : str
        A key of ``providers``.
    model : str
        The model name.
    method : {'structured', 'parse', 'yes_no_logprob'}, default='structured'
        The scoring procedure.
    rubric_file : str, default=''
        The rubric.
    n_rubric_samples : int, default=1
        Rubric variants averaged.
    coverage : float, default=1.0
        The oracle's labelling probability for the logged (base-policy) rows, in [0, 1]
        (a seeded subset, :func:`cje.llm.stages.judge.oracle_selection`).
    fresh_draw_coverage : float, default=1.0
        The same for the target policies' fresh draws, in [0, 1].
    seed : int, default=0
        Seed of that selection.
    temperature : float or None, default=None
        Sent only when set (chat methods).
    max_tokens : int or None, default=None
        Sent only when set (chat methods).
    parse_retries : int, default=2
        Re-asks of an unparseable answer.
    chat_template : str, default='none'
        As in :class:`PolicyConfig`.
    """

    role: str
    provider: str
    model: str
    method: str = "structured"
    rubric_file: str = ""
    n_rubric_samples: int = 1
    coverage: float = 1.0
    fresh_draw_coverage: float = 1.0
    seed: int = 0
    temperature: float | None = None
    max_tokens: int | None = None
    parse_retries: int = 2
    chat_template: str = "none"

    def fingerprint(self, rubric_hash: str) -> str:
        """sha256 (first 16 hex) of the scoring procedure and the rubric text hash.

        Coverage, fresh-draw coverage and seed are left out (they choose what is scored, not how).

        Parameters
        ----------
        rubric_hash : str
            Hash of the rubric text.

        Returns
        -------
        str
            16 hex characters.
        """
        d = asdict(self)
        for k in ("coverage", "fresh_draw_coverage", "seed"):
            d.pop(k)
        d["rubric_hash"] = rubric_hash
        return _hash(d)


def check_api_key_env(provider: str, value: Any) -> None:
    """Check that ``api_key_env`` is an environment-variable *name*.

    A value that looks like a key (pasted by mistake) is refused without being shown.

    Parameters
    ----------
    provider : str
        The provider, for the error's config key.
    value : object
        The configured ``api_key_env``.

    Raises
    ------
    ConfigError
        ``value`` is not a non-empty string that is a variable name.
    """

    where = f"providers.{provider}.api_key_env"
    if not isinstance(value, str) or not value:
        raise ConfigError("must be the name of an environment variable", key=where)
    if not is_env_var_name(value):
        shown = f" ({value!r})" if ENV_NAME.fullmatch(value) and len(value) < 20 else ""
        raise ConfigError(f"must be the NAME of the environment variable that holds the key{shown}; "
                          "the value looks like a key itself, so it is not shown: remove it from "
                          "the config file and revoke it if the file was shared", key=where)


def _key_problem(value: str) -> str | None:
    """What makes ``value`` unusable as an API key in an HTTP header (None: nothing)."""
    if value != value.strip():
        end = value[-1] if value[-1].isspace() else value[0]
        where = "ends" if value[-1].isspace() else "starts"
        return f"{where} with {'a newline' if end in chr(10) + chr(13) else 'whitespace'}"
    for c in value:
        if c.isspace():
            return "contains whitespace"
        if not c.isascii():
            name = unicodedata.name(c, "")
            kind = " (a curly quote, as pasted from a document?)" if "QUOTATION" in name else ""
            return f"contains the non-ASCII character U+{ord(c):04X}{kind}"
        if not c.isprintable():
            return f"contains the control character U+{ord(c):04X}"
    return None


def check_api_key_value(provider: str, env: str, value: str) -> None:
    """Check that the API key ``value`` (from variable ``env``) can be sent as it is.

    A key is printable ASCII without whitespace; anything else (a trailing newline from
    ``echo`` or a file, spaces, a curly quote pasted from a document) cannot go into an
    HTTP header and would fail every request.

    Parameters
    ----------
    provider : str
        The provider, for the error's config key.
    env : str
        The name of the environment variable (named in the error).
    value : str
        The key (never shown).

    Raises
    ------
    ConfigError
        Naming the variable and what is wrong (e.g. "ends with a newline"); the key itself
        is not shown.
    """
    problem = _key_problem(value)
    if problem:
        raise ConfigError(f"environment variable {env} (the API key of provider '{provider}') "
                          f"{problem}: an API key is printable ASCII without spaces; set the "
                          f"variable again without it (the key is not shown)",
                          key=f"providers.{provider}.api_key_env")


def check_base_url(provider: str, url: Any) -> None:
    """Check a provider's ``base_url``: an http(s) URL without credentials in it.

    Credentials in the URL (``http://user:password@host/v1``) are refused: the config file
    is copied into every job's folder and the URL into logs; the key belongs in the
    environment variable named by ``api_key_env`` (sent as a Bearer token). A query
    string (``?api-version=...``) is allowed, each parameter once: it is sent with every
    request (:func:`split_base_url`).

    Parameters
    ----------
    provider : str
        The provider, for the error's config key.
    url : object
        The configured ``base_url``.

    Raises
    ------
    ConfigError
        Not a string, not http(s) with a host, with credentials (the URL is shown without
        them and without query values), or a query parameter given twice.
    """
    where = f"providers.{provider}.base_url"
    if not isinstance(url, str):
        raise ConfigError(f"must be a URL string, got {type(url).__name__}", key=where)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise ConfigError(f"is not a valid URL ({exc}): {redact_url(url)}", key=where) from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"holds credentials (user:password@host): {redact_url(url)}; they "
                          "would be copied into job configs and logs, so they are refused: "
                          "remove them and put the key in the environment variable named by "
                          f"providers.{provider}.api_key_env (sent as a Bearer token)", key=where)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"must be an http:// or https:// URL with a host, got "
                          f"{redact_url(url)}", key=where)
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"query parameter {twice[0]!r} is given more than once: give each "
                          "parameter once (it is sent with every request)", key=where)


def split_base_url(url: str) -> tuple[str, dict[str, str]]:
    """Split ``base_url`` into the URL the endpoint paths are joined to and its query.

    The OpenAI client joins ``chat/completions`` to the base URL's path; a query string
    left in it would end up in the middle (``/v1/?api-version=xchat/completions``). The
    query goes to the client's ``default_query`` instead, which adds it to every request.

    Parameters
    ----------
    url : str
        The configured ``base_url``.

    Returns
    -------
    base : str
        Scheme, host and path (no query, no fragment).
    query : dict
        Parameter -> value, in URL order (:func:`check_base_url` refuses a repeated one).

    Examples
    --------
    >>> split_base_url("https://x.openai.azure.com/openai/deployments/d?api-version=2024-06-01")
    ('https://x.openai.azure.com/openai/deployments/d', {'api-version': '2024-06-01'})
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), query


def max_failed_share(cfg: dict) -> float:
    """``execution.max_failed_share`` of the workflow config (default ``MAX_FAILED_SHARE``).

    A stage whose failed rows are more than this share of the rows it asked about exits
    non-zero instead of writing its output (1: never).

    Parameters
    ----------
    cfg : dict
        The workflow config.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ConfigError
        The value is not a number in [0, 1].
    """
    execution = cfg.get("execution") or {}
    value = execution.get("max_failed_share", MAX_FAILED_SHARE) if isinstance(execution, dict) \
        else MAX_FAILED_SHARE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"must be a number in [0, 1], got {value!r}",
                          key="execution.max_failed_share")
    return float(value)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | os.PathLike) -> dict:
    """Read the workflow config YAML into a dict.

    Parameters
    ----------
    path : str or PathLike
        The config file.

    Returns
    -------
    dict
        The config mapping.

    Raises
    ------
    ConfigError
        The file does not exist, is not valid YAML, its aliases expand beyond a small bound
        (:func:`cje.llm.yamlfile.load_yaml`), or it does not hold a mapping at top level.
    """
    p = Path(path)
    cfg = load_yaml(p)  # safe, and refuses alias bombs (cje.llm.yamlfile)
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file {p} must hold a mapping at top level")
    return cfg


def _build(cls, values: dict, where: str, **fixed):
    if not isinstance(values, dict):
        raise ConfigError("must be a mapping", key=where)
    known = set(cls.__dataclass_fields__) - set(fixed)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; known: {sorted(known)}", key=where)
    try:
        return cls(**fixed, **values)
    except TypeError as exc:
        raise ConfigError(str(exc), key=where) from None


def provider_config(cfg: dict, name: str) -> ProviderConfig:
    """Return the typed provider ``name`` from ``cfg['providers']``.

    Parameters
    ----------
    cfg : dict
        The workflow config.
    name : str
        The provider.

    Returns
    -------
    ProviderConfig
        The checked provider.

    Raises
    ------
    ConfigError
        The provider is not defined, its name is not a safe file-name component, a key is
        unknown or of the wrong type or range, ``kind`` is unknown, ``base_url`` is missing
        for kind 'openai' or is not an http(s) URL without credentials (:func:`check_base_url`).
    """
    providers = cfg.get("providers") or {}
    if name not in providers:
        raise ConfigError(f"provider '{name}' is not defined (have {sorted(providers)})",
                          key="providers")
    safe_component(name, "provider name (config key 'providers')")
    p = _build(ProviderConfig, providers[name], f"providers.{name}", name=name)
    if p.api_key_env is not None:
        check_api_key_env(name, p.api_key_env)
    if p.base_url is not None:
        check_base_url(name, p.base_url)
    for k in ("timeout_s", "retry_after_max_s", "rate_limit_budget_s", "rate_limit_window_s"):
        if not isinstance(getattr(p, k), (int, float)) or not getattr(p, k) > 0:
            raise ConfigError("must be a number > 0", key=f"providers.{name}.{k}")
    for k in ("max_retries", "max_timeouts"):
        if not isinstance(getattr(p, k), int) or getattr(p, k) < 0:
            raise ConfigError("must be an integer >= 0", key=f"providers.{name}.{k}")
    if p.kind not in PROVIDER_KINDS:
        raise ConfigError(f"kind must be one of {PROVIDER_KINDS}, got {p.kind!r}",
                          key=f"providers.{name}.kind")
    if p.kind == "openai" and not p.base_url:
        raise ConfigError("base_url is required for kind 'openai'",
                          key=f"providers.{name}.base_url")
    if p.max_concurrency < 1:
        raise ConfigError("must be >= 1", key=f"providers.{name}.max_concurrency")
    return p


def policy_config(cfg: dict, name: str) -> PolicyConfig:
    """Return the typed policy ``name`` from ``cfg['policies']`` (provider checked).

    Parameters
    ----------
    cfg : dict
        The workflow config.
    name : str
        The policy.

    Returns
    -------
    PolicyConfig
        The checked policy.

    Raises
    ------
    ConfigError
        The policy is not defined, its name is not a safe file-name component (or is
        ``base`` for a target policy), a key is unknown, the chat template is unknown, or its
        provider is bad.
    """
    policies = cfg.get("policies") or {}
    if name not in policies:
        raise ConfigError(f"policy '{name}' is not defined (have {sorted(policies)})",
                          key="policies")
    if name == cfg.get("base_policy", BASE_POLICY_NAME):
        safe_component(name, "policy name (config key 'policies')")  # it becomes file names
    else:  # and a target may not take the base policy's name in results
        target_policy_name(name, "target policy name (config key 'policies')")
    pol = _build(PolicyConfig, policies[name], f"policies.{name}", name=name)
    if pol.chat_template not in CHAT_TEMPLATES:
        raise ConfigError(f"must be one of {CHAT_TEMPLATES}, got {pol.chat_template!r}",
                          key=f"policies.{name}.chat_template")
    provider_config(cfg, pol.provider)
    return pol


def scorer_config(cfg: dict, role: str) -> ScorerConfig:
    """Return the typed ``judge`` or ``oracle`` section (method and provider checked).

    Parameters
    ----------
    cfg : dict
        The workflow config.
    role : {'judge', 'oracle'}
        The section.

    Returns
    -------
    ScorerConfig
        The checked scorer.

    Raises
    ------
    ConfigError
        The section is missing, a key is unknown, the method is unknown,
        ``n_rubric_samples`` < 1, a coverage outside [0, 1], or its provider is bad.
    """
    if role not in cfg:
        raise ConfigError("section is missing", key=role)
    sc = _build(ScorerConfig, cfg[role], role, role=role)
    if sc.method not in SCORER_METHODS:
        raise ConfigError(f"must be one of {SCORER_METHODS}, got {sc.method!r}",
                          key=f"{role}.method")
    if sc.n_rubric_samples < 1:
        raise ConfigError("must be >= 1", key=f"{role}.n_rubric_samples")
    for k in ("coverage", "fresh_draw_coverage"):
        if not 0.0 <= getattr(sc, k) <= 1.0:
            raise ConfigError("must be in [0, 1]", key=f"{role}.{k}")
    provider_config(cfg, sc.provider)
    return sc


