"""``cje check-provider``: the preflight of every LLM stage of a config, before a run.

For each provider of the config, the requirements of every configured stage that uses
it (``generate`` for every policy, which covers the fresh draws; ``logprobs`` for every
policy; ``judge``; ``oracle``), each stage's own ``preflight_requirements``, are
probed through one client (:func:`cje.llm.stages.preflight.check_all`); a probe that
several stages need is sent once. The passes land in the request cache the stages use,
so a run after ``cje check-provider`` pays nothing more for its preflight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cje.errors import OptionError
from cje.llm.client.http import LLMClient, run_with_client
from cje.llm.config import policy_config, provider_config, scorer_config
from cje.llm.presets import Preset, recognise
from cje.llm.scrub import redact_url
from cje.llm.stages import generate, judge, logprobs
from cje.llm.stages.preflight import (
    Outcome,
    PreflightError,
    Requirement,
    check_all,
    failure_message,
)

STAGES = ("generate", "logprobs", "judge", "oracle")


@dataclass
class ProviderReport:
    """What one provider's checks found.

    Parameters
    ----------
    provider : str
        The provider's name.
    base_url : str or None
        Its URL (None: the embedded server the checks started).
    preset : Preset or None
        The recognised preset (:func:`cje.llm.presets.recognise`).
    outcomes : list of Outcome
        One per distinct probe.
    """

    provider: str
    base_url: str | None
    preset: Preset | None
    outcomes: list


def parse_stages(text: str | None) -> tuple[str, ...]:
    """The ``--stages`` flag: a comma-separated subset of :data:`STAGES` (None: all).

    Parameters
    ----------
    text : str or None
        The flag's value.

    Returns
    -------
    tuple of str
        The stages, in pipeline order.

    Raises
    ------
    OptionError
        An unknown or no stage (naming the flag).
    """
    if text is None:
        return STAGES
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown or not names:
        raise OptionError((f"unknown stage {unknown[0]!r}" if unknown else "no stage given")
                          + f"; give one or more of {','.join(STAGES)}", flag="--stages",
                          key="stages")
    return tuple(s for s in STAGES if s in names)


def config_requirements(cfg: dict, stages: tuple[str, ...] = STAGES) -> dict[str, list[Requirement]]:
    """Every requirement of ``stages`` in ``cfg``, per provider (config order).

    Parameters
    ----------
    cfg : dict
        The workflow config.
    stages : tuple of str, default=STAGES
        Which stages to check.

    Returns
    -------
    dict of str to list of Requirement
        Provider name -> its requirements.

    Raises
    ------
    ConfigError
        A bad policy, scorer or provider config.
    """
    out: dict[str, list[Requirement]] = {}
    for name in cfg.get("policies") or {}:
        pol = policy_config(cfg, name)
        prov = provider_config(cfg, pol.provider)
        if "generate" in stages:
            out.setdefault(prov.name, []).extend(generate.preflight_requirements(pol, prov))
        if "logprobs" in stages:
            out.setdefault(prov.name, []).extend(logprobs.preflight_requirements(pol, prov))
    for role in ("judge", "oracle"):
        if role in stages and role in cfg:
            sc = scorer_config(cfg, role)
            prov = provider_config(cfg, sc.provider)
            out.setdefault(prov.name, []).extend(judge.preflight_requirements(sc, prov))
    return out


def check_providers(cfg: dict, stages: tuple[str, ...] = STAGES,
                    request_cache: str | Path | None = None, api_log: str | Path | None = None,
                    rate_limit_dir: str | Path | None = None) -> list[ProviderReport]:
    """Probe every provider of ``cfg`` for what ``stages`` need.

    Parameters
    ----------
    cfg : dict
        The workflow config.
    stages : tuple of str, default=STAGES
        Which stages to check.
    request_cache : str, Path or None, default=None
        The request cache (passes are kept there and reused by the stages).
    api_log : str, Path or None, default=None
        The call log.
    rate_limit_dir : str, Path or None, default=None
        The shared rate-limit state.

    Returns
    -------
    list of ProviderReport
        One per provider used by the stages.

    Raises
    ------
    ConfigError
        A bad config (also a malformed or missing API key).
    """
    reports = []
    for name, reqs in config_requirements(cfg, stages).items():
        prov = provider_config(cfg, name)

        async def body(client: LLMClient, reqs=reqs) -> list[Outcome]:
            return await check_all(client, reqs)

        outcomes = run_with_client(prov, f"check-provider:{name}", api_log, body,
                                   request_cache=request_cache, rate_limit_dir=rate_limit_dir)
        reports.append(ProviderReport(name, prov.base_url, recognise(prov.base_url), outcomes))
    return reports


def format_report(reports: list[ProviderReport]) -> str:
    """The report ``cje check-provider`` prints: per provider, one line per capability.

    Parameters
    ----------
    reports : list of ProviderReport
        From :func:`check_providers`.

    Returns
    -------
    str
        Lines ``status  capability  model  needed by [: detail]``.
    """
    lines = []
    for rep in reports:
        where = redact_url(rep.base_url) if rep.base_url else "the embedded local server"
        known = f" (recognised: {rep.preset.label})" if rep.preset else ""
        lines.append(f"provider '{rep.provider}' at {where}{known}")
        for o in rep.outcomes:
            status = {"ok": "ok (cached)" if o.cached else "ok"}.get(o.status, o.status.upper())
            detail = f": {' '.join(str(o.detail).split())[:200]}" if o.detail else ""
            lines.append(f"  {status:<12} {o.requirement.capability:<20} model "
                         f"'{o.requirement.model}'  for {', '.join(o.needed_by)}{detail}")
    return "\n".join(lines)


def first_failure(reports: list[ProviderReport]) -> PreflightError | None:
    """The error of the first capability that is not there (None: all passed).

    Parameters
    ----------
    reports : list of ProviderReport
        From :func:`check_providers`.

    Returns
    -------
    PreflightError or None
        One line, as a stage would stop with.
    """
    for rep in reports:
        for o in rep.outcomes:
            if not o.ok:
                return PreflightError(failure_message(o, rep.base_url))
    return None
