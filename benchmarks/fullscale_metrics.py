"""What the full-scale benchmark reports, computed from the simulator's request log and the
Snakemake job benchmark files (``benchmarks/fullscale.py``; definitions in docs/benchmarks.md).

- ``stage_of(record)``: the API stage of one logged request (generate, logprobs, judge,
  oracle), from its kind and model;
- ``provider_ideal_s``: the least time the provider's limits allow for a set of
  requests: max(requests / (rpm / 60), tokens / (tpm / 60));
- ``stage_table``: per stage: requests sent, answered, distinct, answered twice, extra
  attempts by cause, its active window and the provider's utilisation during it
  (admitted requests of every stage in the window / what the limit allows in it);
- ``job_peaks``: peak RSS and wall seconds per rule from ``logs/benchmarks/**.tsv``;
- ``output_digest``: a digest of the pipeline's data files, to compare two runs.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from pathlib import Path

STAGES = ("generate", "logprobs", "judge", "oracle")


def stage_of(rec: dict) -> str:
    """generate (completions), logprobs (echo), judge / oracle (chat, by model name)."""
    kind = rec.get("kind")
    if kind == "echo":
        return "logprobs"
    if kind in ("chat", "logprobs"):
        return "oracle" if "oracle" in str(rec.get("model", "")).lower() else "judge"
    return "generate"


def provider_ideal_s(records: list[dict], rpm: float | None, tpm: float | None) -> float:
    """Least seconds the limits allow for the admitted (not 429) requests in ``records``."""
    admitted = [r for r in records if r["status"] != 429]
    t = 0.0
    if rpm:
        t = max(t, len(admitted) / (rpm / 60.0))
    if tpm:
        t = max(t, sum(r["tokens"] for r in admitted) / (tpm / 60.0))
    return t


def _utilisation(records: list[dict], t0: float, t1: float, rpm: float | None,
                 tpm: float | None) -> float:
    """Admitted requests (tokens) arriving in [t0, t1] over what the limits allow in it."""
    span = max(t1 - t0, 1e-9)
    inside = [r for r in records if r["status"] != 429 and t0 <= r["t"] <= t1]
    util = 0.0
    if rpm:
        util = max(util, len(inside) / (rpm / 60.0 * span))
    if tpm:
        util = max(util, sum(r["tokens"] for r in inside) / (tpm / 60.0 * span))
    return util


def stage_table(records: list[dict], rpm: float | None, tpm: float | None) -> dict:
    """Per-stage counts and ratios (module docstring), plus ``all``: the API span."""
    by_stage: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_stage[stage_of(r)].append(r)
    out = {}
    for stage in [s for s in STAGES if s in by_stage] + ["all"]:
        recs = records if stage == "all" else by_stage[stage]
        ok_per_key: dict[str, int] = defaultdict(int)
        causes: dict[str, int] = defaultdict(int)
        for r in recs:
            if r["status"] == 200:
                ok_per_key[r["key"]] += 1
            else:
                causes[{429: "429", 0: "reset"}.get(r["status"], "5xx")] += 1
        t0 = min(r["t"] for r in recs)
        t1 = max(r["done"] for r in recs)
        ideal = provider_ideal_s(recs, rpm, tpm)
        row = {"sent": len(recs), "answered": sum(ok_per_key.values()),
               "distinct": len({r["key"] for r in recs}), "distinct_answered": len(ok_per_key),
               "answered_twice": sum(1 for n in ok_per_key.values() if n > 1),
               "extra_attempts": dict(causes), "start": t0, "end": t1,
               "seconds": round(t1 - t0, 2), "ideal_alone_s": round(ideal, 2),
               "utilisation": round(_utilisation(records, t0, t1, rpm, tpm), 4)}
        if stage == "all":
            row["ratio_to_ideal"] = round(ideal / max(t1 - t0, 1e-9), 4)
        out[stage] = row
    return out


def job_peaks(workdir: Path) -> dict:
    """{rule: {"jobs", "max_rss_mb", "max_s", "sum_s"}} from Snakemake's benchmark TSVs."""
    out: dict[str, dict] = {}
    for tsv in sorted((workdir / "logs" / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(workdir / "logs" / "benchmarks").parts[0].removesuffix(".tsv")
        if rule == "merge":
            rule = "merge_" + tsv.relative_to(workdir / "logs" / "benchmarks").parts[1]
        with open(tsv) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]  # the latest run of that job
        rss = float(row["max_rss"]) if row.get("max_rss") not in (None, "", "NA", "-") else 0.0
        s = float(row["s"])
        r = out.setdefault(rule, {"jobs": 0, "max_rss_mb": 0.0, "max_s": 0.0, "sum_s": 0.0})
        r["jobs"] += 1
        r["max_rss_mb"] = round(max(r["max_rss_mb"], rss), 1)
        r["max_s"] = round(max(r["max_s"], s), 2)
        r["sum_s"] = round(r["sum_s"] + s, 2)
    return out


def output_digest(workdir: Path) -> dict:
    """sha256 of every pipeline data file (responses, logprobs, judge, oracle, dataset,
    fresh draws), keyed by relative path: equal digests = identical rows."""
    out = {}
    data = workdir / "data"
    for sub in ("responses", "logprobs", "judge", "oracle", "fresh_draws"):
        for f in sorted((data / sub).glob("*.jsonl")):
            out[str(f.relative_to(workdir))] = hashlib.sha256(f.read_bytes()).hexdigest()
    ds = data / "cje_dataset.jsonl"
    if ds.exists():
        out[str(ds.relative_to(workdir))] = hashlib.sha256(ds.read_bytes()).hexdigest()
    return out


def row_check(workdir: Path, n_prompts: int, policies: list[str]) -> dict:
    """Rows per data file, keys seen twice (target 0) and keys missing (target 0)."""
    import json
    report = {"files": 0, "duplicated": 0, "missing": 0, "errors": 0}
    for sub in ("responses", "logprobs", "judge", "oracle"):
        for pol in policies:
            f = workdir / "data" / sub / f"{pol}.jsonl"
            keys = []
            with open(f) as fh:
                for line in fh:
                    r = json.loads(line)
                    keys.append((r["prompt_id"], r.get("draw_idx", 0)))
                    report["errors"] += r.get("status") == "error"
            report["files"] += 1
            report["duplicated"] += len(keys) - len(set(keys))
            report["missing"] += n_prompts - len(set(keys))
    return report


def expected_requests(workdir: Path, cfg: dict) -> dict:
    """The least number of distinct requests each stage needs, from the run's own outputs
    (independent of the simulator's log): generate = rows of every policy; logprobs =
    distinct rendered (policy, base response) chats; judge = distinct (prompt, response)
    pairs over every policy; oracle = distinct pairs among the selected rows; plus each
    stage's distinct preflight probes (cje.llm.stages.preflight). Rows whose
    generation failed need no judge/oracle/logprobs request."""
    import json

    from cje.llm.config import policy_config
    from cje.llm.stages.check_provider import config_requirements
    from cje.llm.stages.teacher_forcing import render_pair
    data = workdir / "data"
    policies = list(cfg["policies"])
    rows = {p: [json.loads(x) for x in open(data / "responses" / f"{p}.jsonl")] for p in policies}
    ok = {p: [r for r in rows[p] if r["status"] == "ok"] for p in policies}
    base = cfg.get("base_policy", "base")
    chats = set()  # what a scoring request holds: model, temperature and the rendered chat
    for p in policies:
        pol = policy_config(cfg, p)
        for r in ok[base]:
            cut = r.get("finish_reason") == "length"
            chats.add((pol.model, pol.temperature,
                       render_pair(pol, r["prompt"], r["response"], not cut)[1]))
    pairs = {(r["prompt"], r["response"]) for p in policies for r in ok[p]}
    probes: dict[str, set] = {}  # each stage's preflight: one request per distinct probe
    for reqs in config_requirements(cfg).values():
        for req in reqs:
            probes.setdefault(req.needed_by.split(" ")[0], set()).add(req.key())
    selected = set()
    for p in policies:
        sel = {(x["prompt_id"], x["draw_idx"]) for x in map(json.loads, open(data / "oracle" / f"{p}.jsonl"))
               if x.get("selected")}
        selected |= {(r["prompt"], r["response"]) for r in ok[p] if (r["prompt_id"], r["draw_idx"]) in sel}
    n_variants = cfg["oracle"].get("n_rubric_samples", 1)
    counts = {"generate": sum(len(rows[p]) for p in policies), "logprobs": len(chats),
              "judge": len(pairs), "oracle": len(selected) * n_variants}
    return {stage: n + len(probes.get(stage, ())) for stage, n in counts.items()}


def preflight_requests(cfg: dict) -> dict[str, int]:
    """Distinct preflight probes per stage (included in :func:`expected_requests`)."""
    from cje.llm.stages.check_provider import config_requirements

    probes: dict[str, set] = {}
    for reqs in config_requirements(cfg).values():
        for req in reqs:
            probes.setdefault(req.needed_by.split(" ")[0], set()).add(req.key())
    return {stage: len(keys) for stage, keys in probes.items()}
