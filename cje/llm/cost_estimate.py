"""What a run will cost, before it starts: calls and an upper bound on tokens and money, from the config.

Calls follow the workflow (docs/workflow.md), with n prompts (``prompts.n_samples``,
or the lines of a local ``prompts.source`` when it is null), draws(p) = 1 for the
base policy and ``fresh_draws.draws_per_prompt`` for a target:

=========  ===========================================================  ======================
stage      calls                                                        provider
=========  ===========================================================  ======================
generate   n x draws(p), every policy p                                 the policy's
logprobs   n per policy (each scores the base responses; 2 calls if      the policy's
           a provider falls back to ``two_call``)
judge      n x draws(p) x judge.n_rubric_samples, every policy p        judge.provider
oracle     (base: n x oracle.coverage; target: n x draws x               oracle.provider
           oracle.fresh_draw_coverage) x oracle.n_rubric_samples
=========  ===========================================================  ======================

Tokens (an upper bound: responses are taken at ``max_tokens``): a prompt is
``prompt_tokens`` (the mean characters / 4 of a local prompt file, else the
``--prompt-tokens`` guess) plus the policy's system prompt; judge and oracle
calls read the rubric, the prompt and the response and answer with
``SCORER_OUTPUT_TOKENS`` (a ``{"score": 87}`` object; reasoning models such as
gpt-5 also bill hidden reasoning tokens, not included). Characters / 4 is the
usual English rule of thumb for BPE tokenisers. Cost = tokens x the provider's
prices; a hosted provider without prices is a warning, and the headline names every
stage it serves as unpriced (``<= $10.30 + unpriced: judge (model X)``), so the
bound never reads as a whole run's cost when part of it is missing. The embedded
local model is free, so it is priced (at $0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cje.errors import ConfigError
from cje.llm.config import policy_config, provider_config, scorer_config

__all__ = ["Estimate", "estimate_run", "SCORER_OUTPUT_TOKENS", "CHARS_PER_TOKEN"]

CHARS_PER_TOKEN = 4
SCORER_OUTPUT_TOKENS = 10


def _tokens(text: str) -> int:
    return -(-len(text or "") // CHARS_PER_TOKEN)


@dataclass
class Estimate:
    """Rows per (stage, provider): calls, prompt_tokens, completion_tokens, cost_usd (upper bounds).

    Parameters
    ----------
    n_prompts : int
        Prompts n.
    prompt_tokens : float
        Mean tokens per prompt.
    rows : list of dict
        One row per (stage, provider); ``priced`` is False when its provider is hosted and has
        no prices (its ``cost_usd`` 0 is then not a cost).
    warnings : list of str
        Hosted providers without prices.
    notes : list of str
        Where the prompt length came from, and what is not included.
    unpriced : list of str
        The stages whose calls go to a hosted provider without prices, with their models
        (``judge (model gpt-5)``): their cost is not in the total.
    """

    n_prompts: int
    prompt_tokens: float
    rows: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)

    def headline(self) -> str:
        """``total: 47,500 calls, <= $10.30`` plus what is unpriced, when anything is.

        Returns
        -------
        str
            One line.
        """
        text = f"total: {self.total('calls'):,.0f} calls, <= ${self.total():.2f}"
        return text + (f" + unpriced: {', '.join(self.unpriced)}" if self.unpriced else "")

    def total(self, key: str = "cost_usd") -> float:
        """Sum of ``key`` over all rows.

        Parameters
        ----------
        key : str, default='cost_usd'
            ``calls``, ``prompt_tokens``, ``completion_tokens`` or ``cost_usd``.

        Returns
        -------
        float
            The sum.
        """
        return float(sum(r[key] for r in self.rows))

    def table(self) -> str:
        """The text ``cje cost`` prints before a run: one line per (stage, provider), total, notes, warnings.

        Returns
        -------
        str
            The estimate as text.
        """
        out = [f"estimate before the run: {self.n_prompts} prompts, ~{self.prompt_tokens:.0f} tokens per prompt",
               f"{'stage':<10}{'provider':<14}{'calls':>9}{'prompt tok':>14}{'compl. tok <=':>15}{'cost USD <=':>13}"]
        for r in self.rows:
            cost = f"{r['cost_usd']:.2f}" if r.get("priced", True) else "unpriced"
            out.append(f"{r['stage']:<10}{r['provider']:<14}{r['calls']:>9,}{r['prompt_tokens']:>14,.0f}"
                       f"{r['completion_tokens']:>15,.0f}{cost:>13}")
        out.append(self.headline())
        return "\n".join(out + [f"note: {n}" for n in self.notes] + [f"warning: {w}" for w in self.warnings])

    def to_dict(self) -> dict:
        """The estimate as a JSON-able dict (rows, totals, warnings).

        Returns
        -------
        dict
            The estimate as plain data.
        """
        return {"n_prompts": self.n_prompts, "prompt_tokens": self.prompt_tokens, "rows": self.rows,
                "total_cost_usd": self.total(), "total_calls": self.total("calls"), "unpriced": self.unpriced,
                "warnings": self.warnings}


def _prompt_stats(cfg: dict, n_prompts: int | None, prompt_tokens: float | None) -> tuple[int, float, list[str]]:
    """Number of prompts and mean prompt tokens, from the config (and a local prompt file when there is one)."""

    notes = []
    prompts = cfg.get("prompts") or {}
    source = prompts.get("source")
    texts = None
    if source and Path(source).is_file():
        lines = [ln for ln in Path(source).read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        texts = []
        for ln in lines:
            try:
                texts.append(str(json.loads(ln).get("prompt", "")))
            except (ValueError, AttributeError):
                continue
    n = n_prompts or prompts.get("n_samples") or (len(texts) if texts is not None else None)
    if n is None:
        raise ConfigError("the number of prompts is unknown (prompts.n_samples is null and prompts.source is not a "
                          "local file): pass --n-prompts", key="prompts.n_samples")
    if texts is not None and n > len(texts):
        n = len(texts)
    if prompt_tokens is None:
        if texts:
            prompt_tokens = sum(_tokens(t) for t in texts) / len(texts)
            notes.append(f"prompt length from {source} (characters / {CHARS_PER_TOKEN})")
        else:
            prompt_tokens = 100.0
            notes.append("prompt length unknown (prompts from a hub dataset): guessed 100 tokens, set --prompt-tokens")
    return int(n), float(prompt_tokens), notes


def estimate_run(cfg: dict, n_prompts: int | None = None, prompt_tokens: float | None = None) -> Estimate:
    """Calls, tokens and cost of one run of the workflow config ``cfg`` (module docstring).

    Parameters
    ----------
    cfg : dict
        The workflow config.
    n_prompts : int or None, default=None
        Prompts n (default ``prompts.n_samples``, or the lines of a local ``prompts.source``).
    prompt_tokens : float or None, default=None
        Mean tokens per prompt (default: characters / 4 of a local prompt file, else 100).

    Returns
    -------
    Estimate
        Upper bounds per (stage, provider), with notes and warnings.

    Raises
    ------
    ConfigError
        The number of prompts is unknown, or a policy, provider, judge or oracle section is bad.
    """

    n, p_tok, notes = _prompt_stats(cfg, n_prompts, prompt_tokens)
    est = Estimate(n_prompts=n, prompt_tokens=p_tok, notes=notes)
    base = cfg.get("base_policy", "base")
    draws = int((cfg.get("fresh_draws") or {}).get("draws_per_prompt", 1))
    totals: dict[tuple[str, str], dict] = {}

    models: dict[tuple[str, str], set[str]] = {}

    def add(stage: str, provider: str, model: str, calls: float, prompt: float, completion: float) -> None:
        r = totals.setdefault((stage, provider), {"stage": stage, "provider": provider, "calls": 0,
                                                 "prompt_tokens": 0.0, "completion_tokens": 0.0})
        models.setdefault((stage, provider), set()).add(model)
        r["calls"] += int(round(calls))
        r["prompt_tokens"] += calls * prompt
        r["completion_tokens"] += calls * completion

    policies = {name: policy_config(cfg, name) for name in cfg.get("policies") or {}}
    judge, oracle = scorer_config(cfg, "judge"), scorer_config(cfg, "oracle")
    rubric = {}
    for role, scorer in (("judge", judge), ("oracle", oracle)):
        path = Path(scorer.rubric_file) if scorer.rubric_file else None
        rubric[role] = _tokens(path.read_text(encoding="utf-8", errors="replace")) if path and path.is_file() else 200
    base_pol = policies.get(base)
    for name, pol in policies.items():
        k = 1 if name == base else draws
        system = _tokens(pol.system_prompt)
        add("generate", pol.provider, pol.model, n * k, p_tok + system, pol.max_tokens)
        if base_pol is not None:  # every policy scores the base responses
            add("logprobs", pol.provider, pol.model, n, p_tok + system + base_pol.max_tokens, 1)
        reply = pol.max_tokens
        add("judge", judge.provider, judge.model, n * k * judge.n_rubric_samples, rubric["judge"] + p_tok + reply,
            SCORER_OUTPUT_TOKENS)
        share = oracle.coverage if name == base else oracle.fresh_draw_coverage
        add("oracle", oracle.provider, oracle.model, n * k * share * oracle.n_rubric_samples,
            rubric["oracle"] + p_tok + reply, SCORER_OUTPUT_TOKENS)
    order = {"generate": 0, "logprobs": 1, "judge": 2, "oracle": 3}
    for (stage, provider), r in sorted(totals.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        spec = provider_config(cfg, provider)
        r["cost_usd"] = (r["prompt_tokens"] * spec.cost_per_million_input_tokens
                         + r["completion_tokens"] * spec.cost_per_million_output_tokens) / 1e6
        est.rows.append(r)
    unpriced = set()
    for name in sorted({r["provider"] for r in est.rows}):
        spec = provider_config(cfg, name)
        if spec.kind != "local" and not (spec.cost_per_million_input_tokens or spec.cost_per_million_output_tokens):
            unpriced.add(name)
            tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in est.rows if r["provider"] == name)
            est.warnings.append(f"provider '{name}' has no prices (providers.{name}.cost_per_million_input_tokens / "
                                f"cost_per_million_output_tokens): its ~{tokens:,.0f} tokens are not in the total")
    for r in est.rows:  # in stage order
        r["priced"] = r["provider"] not in unpriced
        if not r["priced"] and r["calls"]:
            names = sorted(models[(r["stage"], r["provider"])])
            est.unpriced.append(f"{r['stage']} ({'model' if len(names) == 1 else 'models'} {', '.join(names)})")
    if any(provider_config(cfg, s.provider).kind != "local" and s.method != "yes_no_logprob"
           for s in (judge, oracle)):
        est.notes.append("reasoning models (e.g. gpt-5) also bill hidden reasoning tokens per judge/oracle call: "
                         "not included")
    return est
