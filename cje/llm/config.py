"""Typed views of the workflow config's LLM sections (providers, policies, judge, oracle).

The workflow config (``config/config.yaml``, shape in docs/contracts.md) is a plain
dict; the LLM stages read it through the dataclasses here so that every key has a
sensible default and a wrong key or type is reported by name (``ConfigError``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cje.errors import ConfigError

PROVIDER_KINDS = ("local", "openai")
CHAT_TEMPLATES = ("gemma", "llama3", "chatml", "none")
SCORER_METHODS = ("structured", "parse", "yes_no_logprob")


@dataclass(frozen=True)
class ProviderConfig:
    """How to reach one OpenAI-compatible endpoint and how hard to push it.

    ``kind: local`` means the embedded llama.cpp server that each stage starts and
    stops (``cje.llm.local_server``); ``kind: openai`` is any OpenAI-compatible URL.
    Rate limits of ``None`` mean unlimited. Costs are USD per million tokens.
    ``retry_backoff_s`` is the first backoff ceiling (doubled per retry, capped at
    ``retry_backoff_max_s``, full jitter), overridable so tests can run fast.
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
    cost_per_million_input_tokens: float = 0.0
    cost_per_million_output_tokens: float = 0.0

    def api_key(self) -> str:
        """Return the API key from the environment variable ``api_key_env``.

        Local servers and keyless endpoints (``api_key_env`` unset) get a
        placeholder. Raises ``ConfigError`` naming the variable when it is unset.
        """
        if self.kind == "local" or not self.api_key_env:
            return "not-needed"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"environment variable {self.api_key_env} is not set "
                              f"(the API key of provider '{self.name}')",
                              key=f"providers.{self.name}.api_key_env")
        return key


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
        """sha256 (first 16 hex) of everything that changes what is sampled."""
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
        """sha256 (first 16 hex) of the scoring procedure and the rubric text hash."""
        d = asdict(self)
        for k in ("coverage", "fresh_draw_coverage", "seed"):
            d.pop(k)
        d["rubric_hash"] = rubric_hash
        return _hash(d)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | os.PathLike) -> dict:
    """Read the workflow config YAML into a dict (``ConfigError`` if unreadable)."""
    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
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
    """Return the typed provider ``name`` from ``cfg['providers']``."""
    providers = cfg.get("providers") or {}
    if name not in providers:
        raise ConfigError(f"provider '{name}' is not defined (have {sorted(providers)})",
                          key="providers")
    p = _build(ProviderConfig, providers[name], f"providers.{name}", name=name)
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
    """Return the typed policy ``name`` from ``cfg['policies']`` (provider checked)."""
    policies = cfg.get("policies") or {}
    if name not in policies:
        raise ConfigError(f"policy '{name}' is not defined (have {sorted(policies)})",
                          key="policies")
    pol = _build(PolicyConfig, policies[name], f"policies.{name}", name=name)
    if pol.chat_template not in CHAT_TEMPLATES:
        raise ConfigError(f"must be one of {CHAT_TEMPLATES}, got {pol.chat_template!r}",
                          key=f"policies.{name}.chat_template")
    provider_config(cfg, pol.provider)
    return pol


def scorer_config(cfg: dict, role: str) -> ScorerConfig:
    """Return the typed ``judge`` or ``oracle`` section (method and provider checked)."""
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


def batch_size(cfg: dict) -> int:
    """``execution.batch_size`` (side-cache flush interval), default 20."""
    return int((cfg.get("execution") or {}).get("batch_size", 20))
