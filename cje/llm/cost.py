"""What a run cost: tokens and money per stage and provider, from the API call logs.

Source: the ``{"event": "stage_summary", ...}`` lines every LLM stage appends to
its call log at the end of each job (docs/llm.md, "The call log"), summed by the
one reader of those lines, :func:`cje.llm.client.calllog.run_cost_summary` (reruns
included: money spent is money spent). Cost is what the stages computed with the
provider's prices when they ran: prompt_tokens x cost_per_million_input_tokens /
1e6 + completion_tokens x cost_per_million_output_tokens / 1e6.

Two things a total cannot show are reported beside it:

* a provider whose tokens were counted at $0 (no prices in its config; the local
  embedded model is free and exempt): a warning naming the config keys;
* a stage with attempt lines in the log but no ``stage_summary`` (its job was
  killed before the end): its spend is missing from the totals, and the number
  of attempt lines is given.

Fields added to the log lines later are ignored; missing numeric fields count 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cje.llm.client.calllog import run_cost_summary

__all__ = ["CostReport", "read_costs", "stage_kind", "NUMERIC"]

# summed per (stage, provider, model); a field a log does not have counts 0
NUMERIC = ("calls", "ok", "errors", "retries", "prompt_tokens", "completion_tokens", "cost_usd")


def stage_kind(stage: str) -> str:
    """``'judge:clone' -> 'judge'`` (the workflow stage a log stage belongs to).

    Parameters
    ----------
    stage : str
        A stage name from a call log.

    Returns
    -------
    str
        The part before the first ``:``.
    """
    return str(stage).split(":", 1)[0]


@dataclass
class CostReport:
    """Totals per (stage, provider, model) plus the warnings of the module docstring.

    Parameters
    ----------
    rows : list of dict
        One row per (stage, provider, model) with the :data:`NUMERIC` sums.
    warnings : list of str
        Unpriced providers and stages killed before their summary.
    logs : list of str
        The call logs read.
    """

    rows: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def total(self, key: str = "cost_usd") -> float:
        """Sum of ``key`` over all rows.

        Parameters
        ----------
        key : str, default='cost_usd'
            One of :data:`NUMERIC`.

        Returns
        -------
        float
            The sum.
        """
        return float(sum(r.get(key, 0) or 0 for r in self.rows))

    def by(self, what: str) -> list[dict]:
        """Totals grouped by ``'stage'`` (the stage kind: generate, logprobs, judge, oracle) or ``'provider'``.

        Parameters
        ----------
        what : {'stage', 'provider'}
            The grouping.

        Returns
        -------
        list of dict
            One row per group, sorted by name.
        """
        groups: dict[str, dict] = {}
        for r in self.rows:
            key = stage_kind(r["stage"]) if what == "stage" else r[what]
            g = groups.setdefault(key, {what: key, **{k: 0 for k in NUMERIC}})
            for k in NUMERIC:
                g[k] += r.get(k, 0) or 0
        return [groups[k] for k in sorted(groups)]

    def table(self) -> str:
        """The text ``cje cost`` prints: per stage, per provider, total, warnings.

        Returns
        -------
        str
            The report as text.
        """
        def lines(rows: list[dict], first: str) -> list[str]:
            out = [f"{first:<16}{'calls':>9}{'errors':>8}{'retries':>9}{'prompt tok':>13}{'compl. tok':>13}"
                   f"{'cost USD':>11}"]
            for r in rows:
                out.append(f"{str(r[first]):<16}{r['calls']:>9}{r['errors']:>8}{r['retries']:>9}"
                           f"{r['prompt_tokens']:>13,}{r['completion_tokens']:>13,}{r['cost_usd']:>11.4f}")
            return out

        if not self.rows:
            text = ["no stage_summary lines in " + (", ".join(self.logs) or "the logs")]
        else:
            text = lines(self.by("stage"), "stage") + [""] + lines(self.by("provider"), "provider")
            text += ["", f"total: {self.total('calls'):,.0f} calls, {self.total('prompt_tokens'):,.0f} prompt + "
                         f"{self.total('completion_tokens'):,.0f} completion tokens, ${self.total():.4f}"]
        return "\n".join(text + [f"warning: {w}" for w in self.warnings])

    def to_dict(self) -> dict:
        """The report as a JSON-able dict: rows, totals by stage and provider, total cost, warnings, logs.

        Returns
        -------
        dict
            The report as plain data.
        """
        return {"rows": self.rows, "by_stage": self.by("stage"), "by_provider": self.by("provider"),
                "total_cost_usd": self.total(), "warnings": self.warnings, "logs": self.logs}


def _attempt_stages(path: Path) -> dict[str, int]:
    """Attempt lines per stage (lines with a ``status``, not events); torn lines are skipped."""
    counts: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if '"status"' not in line or '"event"' in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line of a killed job
            if isinstance(rec, dict) and "stage" in rec:
                counts[rec["stage"]] = counts.get(rec["stage"], 0) + 1
    return counts


def read_costs(logs: list[str | Path], providers: dict | None = None) -> CostReport:
    """Sum the stage summaries of every call log in ``logs`` (files, or folders searched for ``*.log``).

    Parameters
    ----------
    logs : list of str or Path
        Call-log files, or folders searched recursively for ``*.log``.
    providers : dict or None, default=None
        The workflow config's ``providers`` mapping, when known; a provider
        of ``kind`` other than ``local`` without prices there is warned about even if it
        has no tokens yet.

    Returns
    -------
    CostReport
        A missing log file is a warning, not an error.
    """

    files: list[Path] = []
    for item in logs:
        p = Path(item)
        files += sorted(p.rglob("*.log")) if p.is_dir() else [p]
    report = CostReport(logs=[str(f) for f in files])
    merged: dict[tuple[str, str, str], dict] = {}
    summarised: set[str] = set()
    attempts: dict[str, int] = {}
    for f in files:
        if not f.exists():
            report.warnings.append(f"call log {f} not found")
            continue
        for row in run_cost_summary(f):
            key = (row["stage"], row.get("provider", "?"), row.get("model", "?"))
            m = merged.setdefault(key, {"stage": key[0], "provider": key[1], "model": key[2],
                                        **{k: 0 for k in NUMERIC}})
            for k in NUMERIC:
                m[k] += row.get(k, 0) or 0
            summarised.add(row["stage"])
        for stage, n in _attempt_stages(f).items():
            attempts[stage] = attempts.get(stage, 0) + n
    report.rows = [merged[k] for k in sorted(merged)]
    for stage in sorted(set(attempts) - summarised):
        report.warnings.append(f"stage {stage}: {attempts[stage]} logged attempts but no stage_summary (the job "
                               "was killed before its end?); its spend is missing from the totals")
    providers = providers or {}
    unpriced = {r["provider"] for r in report.rows
                if (r["prompt_tokens"] or r["completion_tokens"]) and not r["cost_usd"]
                and (providers.get(r["provider"]) or {}).get("kind") != "local"}
    unpriced |= {name for name, spec in providers.items()
                 if (spec or {}).get("kind") != "local" and not _has_prices(spec or {})}
    for name in sorted(unpriced):
        tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in report.rows if r["provider"] == name)
        keys = f"providers.{name}.cost_per_million_input_tokens / cost_per_million_output_tokens"
        if name in providers:
            report.warnings.append(f"provider '{name}' has no prices ({keys}): its {tokens:,} tokens are counted "
                                   "at $0")
        else:
            report.warnings.append(f"provider '{name}': {tokens:,} tokens counted at $0 (no prices when the stages "
                                   f"ran: right for the local embedded model, otherwise set {keys}; pass --config "
                                   "to check)")
    return report


def _has_prices(spec: dict) -> bool:
    return bool(spec.get("cost_per_million_input_tokens") or spec.get("cost_per_million_output_tokens"))
