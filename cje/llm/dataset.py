"""The ``merge`` and ``dataset`` stages: gather shards; assemble the analysis inputs.

``merge``: concatenate shard files, keep one row per key (``policy``,
``prompt_id``, ``draw_idx`` where present; an ok row beats an error row), sort.

``dataset``: join base responses, log-probs, judge scores and oracle labels into
``cje_dataset.jsonl`` (one row per logged prompt, the base policy's draw 0) and
write ``fresh_draws/{policy}_responses.jsonl`` for every policy (all draws, with
judge score and oracle label). Rows whose generation, log-prob, judge or oracle
step failed are kept with null values and their status; nothing is filled in.
A summary of every failure kind is returned (and printed by the CLI).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from cje.errors import ConfigError, InputError
from cje.llm.cache import dedupe_sorted, read_jsonl, write_jsonl_atomic

log = logging.getLogger(__name__)
MERGE_KEY = ("policy", "prompt_id", "draw_idx")


def merge_shards(inputs: list[str], output: str) -> int:
    """Gather shard JSONL files into ``output`` (atomic): deduplicated by
    (policy, prompt_id, draw_idx) -- ok beats error, else the later file wins --
    and sorted. Returns the number of rows written."""
    if not inputs:
        raise ConfigError("no input files", key="--inputs")
    rows = [r for path in inputs for r in read_jsonl(path, required=("prompt_id",))]
    return write_jsonl_atomic(output, dedupe_sorted(rows, MERGE_KEY))


def _index(path: Path, key: tuple[str, ...], required: tuple[str, ...]) -> dict[tuple, dict]:
    rows = read_jsonl(path, required=required)
    out: dict[tuple, dict] = {}
    for i, r in enumerate(rows, 1):
        k = tuple(r.get(f) for f in key)
        if k in out:
            raise InputError(f"duplicate row for {dict(zip(key, k))} (merge shards first)",
                             path=str(path), field="prompt_id")
        out[k] = r
    return out


def _value(row: dict | None, field: str) -> tuple[float | None, str]:
    """(value, status) of a scorer/log-prob row; status 'missing' when there is no row."""
    if row is None:
        return None, "missing"
    status = row.get("status", "ok")
    value = row.get(field) if status == "ok" else None
    return value, status


def assemble_dataset(cfg: dict, responses_dir: str, logprobs_dir: str, judge_dir: str,
                     oracle_dir: str, output: str, fresh_draws_dir: str) -> dict:
    """Write ``output`` (``cje_dataset.jsonl``) and ``fresh_draws_dir/{policy}_responses.jsonl``.

    Logged rows: base responses with ``draw_idx == 0``; ``base_policy_logprob`` and
    ``target_policy_logprobs[p]`` from ``logprobs_dir/{p}.jsonl`` (null unless that
    row's status is ok); ``metadata`` = {prompt_id, judge_score, oracle_label,
    logprob_status{p}, response_status, judge_status, oracle_status}. Returns the
    summary: rows written and counts of every failure kind.
    """
    base = cfg.get("base_policy", "base")
    policies = list((cfg.get("policies") or {}).keys())
    if base not in policies:
        raise ConfigError(f"base policy '{base}' is not in policies", key="base_policy")
    targets = [p for p in policies if p != base]
    rdir, ldir, jdir, odir = map(Path, (responses_dir, logprobs_dir, judge_dir, oracle_dir))
    kd = ("prompt_id", "draw_idx")
    summary: dict = {"logged_rows": 0, "failures": Counter(), "fresh_draws": {}}

    def scored(policy: str):
        judge = _index(jdir / f"{policy}.jsonl", kd, ("prompt_id", "draw_idx", "status"))
        opath = odir / f"{policy}.jsonl"
        oracle = _index(opath, kd, ("prompt_id", "draw_idx", "status")) \
            if opath.exists() else None
        if oracle is None:
            summary["failures"][f"oracle file missing: {opath}"] += 1
        return judge, oracle

    def labels(judge, oracle, k, fail: Counter, prefix: str) -> dict:
        js, jst = _value(judge.get(k), "judge_score")
        if oracle is None:
            ol, ost = None, "missing"
        else:
            ol, ost = _value(oracle.get(k), "oracle_label")
        for name, st in (("judge", jst), ("oracle", ost)):
            if st not in ("ok", "not_selected") and not (name == "oracle" and oracle is None):
                fail[f"{prefix}{name} {st}"] += 1
        return {"judge_score": js, "oracle_label": ol, "judge_status": jst, "oracle_status": ost}

    # logged data
    responses = _index(rdir / f"{base}.jsonl", kd, ("prompt_id", "draw_idx", "status"))
    logp = {p: _index(ldir / f"{p}.jsonl", ("prompt_id",), ("prompt_id", "status"))
            for p in [base] + targets}
    judge, oracle = scored(base)
    fail = summary["failures"]
    logged = []
    for (pid, draw), r in sorted(responses.items()):
        if draw != 0:
            continue
        if r["status"] != "ok":
            fail["logged: generation error"] += 1
        lp = {p: _value(logp[p].get((pid,)), "logprob") for p in [base] + targets}
        for p, (_, st) in lp.items():
            if st != "ok":
                fail[f"logged: logprob {p} {st}"] += 1
        lab = labels(judge, oracle, (pid, draw), fail, "logged: ")
        logged.append({
            "prompt_id": pid, "prompt": r.get("prompt"),
            "response": r.get("response") if r["status"] == "ok" else None,
            "base_policy_logprob": lp[base][0],
            "target_policy_logprobs": {p: lp[p][0] for p in targets},
            "metadata": {"prompt_id": pid, "judge_score": lab["judge_score"],
                         "oracle_label": lab["oracle_label"],
                         "logprob_status": {p: lp[p][1] for p in [base] + targets},
                         "response_status": r["status"], "judge_status": lab["judge_status"],
                         "oracle_status": lab["oracle_status"]}})
    summary["logged_rows"] = write_jsonl_atomic(output, logged)

    # fresh draws: every policy's responses with their scores
    for p in [base] + targets:
        rpath = rdir / f"{p}.jsonl"
        resp = responses if p == base else _index(rpath, kd, ("prompt_id", "draw_idx", "status"))
        pj, po = (judge, oracle) if p == base else scored(p)
        rows = []
        for (pid, draw), r in sorted(resp.items()):
            if r["status"] != "ok":
                fail[f"fresh {p}: generation error"] += 1
            lab = labels(pj, po, (pid, draw), fail, f"fresh {p}: ")
            rows.append({"prompt_id": pid, "prompt": r.get("prompt"),
                         "response": r.get("response") if r["status"] == "ok" else None,
                         "draw_idx": draw, "judge_score": lab["judge_score"],
                         "oracle_label": lab["oracle_label"], "response_status": r["status"],
                         "judge_status": lab["judge_status"],
                         "oracle_status": lab["oracle_status"]})
        summary["fresh_draws"][p] = write_jsonl_atomic(
            Path(fresh_draws_dir) / f"{p}_responses.jsonl", rows)
    summary["failures"] = dict(summary["failures"])
    return summary


def format_summary(summary: dict) -> str:
    """Human-readable dataset summary: rows written, then every failure kind's count."""
    lines = [f"cje_dataset.jsonl: {summary['logged_rows']} logged rows; fresh draws: "
             + ", ".join(f"{p}={n}" for p, n in summary["fresh_draws"].items())]
    if summary["failures"]:
        lines.append("rows kept with null values (by failure kind):")
        lines += [f"  {k}: {n}" for k, n in sorted(summary["failures"].items())]
    else:
        lines.append("no failed rows")
    return "\n".join(lines)
