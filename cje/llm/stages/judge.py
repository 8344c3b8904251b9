"""The ``judge`` and ``oracle`` stages: score (prompt, response) rows with a rubric.

Rubric files (``judge.rubric_file``, ``oracle.rubric_file``) are plain text with
``{prompt}`` and ``{response}`` placeholders; several variants are separated by
a line ``---``. A scorer with ``n_rubric_samples = n`` asks variants
0..n-1 (cycling if the file has fewer) and stores their mean. ``rubric_hash`` =
sha256 of the whole file text.

Methods (``method`` in config):

- ``structured``: chat completion with a JSON-schema ``response_format``
  ``{"score": integer 0-100}``; a non-JSON answer is still parsed robustly.
- ``parse``: chat completion, answer parsed by ``parse_score`` (JSON object,
  "Score: 87", "87/100", "87 out of 100", or a bare number).
- ``yes_no_logprob``: one-token completion with top log-probs; score =
  P(yes) / (P(yes) + P(no)), summing the probabilities of the top tokens that
  read "yes" / "no" after stripping spaces and case (" Yes", "Yes", ...); a word
  missing from the top list gets the smallest listed probability (its upper
  bound). This is the usable judging signal of a small base model (pipeline.md).

Before the first row, the provider preflight checks that the endpoint can do what the
method needs (:func:`preflight_requirements`, :mod:`cje.llm.stages.preflight`).

Scores are stored in [0, 1] (0-100 answers divided by 100). An unparseable answer
is retried (``parse_retries``) and then stored as ``status: "error"`` with the raw
answer -- never as a default score. The oracle labels a seeded subset: each
row independently with probability ``coverage``, decided by a hash of (seed,
prompt_id, draw_idx), so identically in every shard and unchanged when rows are
added (``oracle_selection``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from cje.errors import ConfigError, InputError
from cje.llm import templates
from cje.llm.client.http import LLMClient, MalformedResponse, chat_text, run_with_client
from cje.llm.config import (
    ProviderConfig,
    ScorerConfig,
    max_failed_share,
    provider_config,
    scorer_config,
)
from cje.llm.stages.io import (
    check_failed_rows,
    read_jsonl,
    run_items,
    write_jsonl_atomic,
)
from cje.llm.stages.preflight import (
    PROBE_SCORE,
    PROBE_YES_NO,
    Requirement,
    run_preflight,
)
from cje.llm.stages.prompts import select_shard

log = logging.getLogger(__name__)
KEY_FIELDS = ("prompt_id", "draw_idx", "input_sha")
VARIANT_SEPARATOR = re.compile(r"^---\s*$", re.M)
SCORE_SCHEMA = {"type": "json_schema", "json_schema": {
    "name": "rubric_score", "strict": True,
    "schema": {"type": "object", "additionalProperties": False, "required": ["score"],
               "properties": {"score": {"type": "integer"}}}}}  # range checked by parse_score
_NUM = r"(\d{1,3}(?:\.\d+)?)"


def load_rubric(path: str) -> tuple[list[str], str]:
    """Read a rubric file; return (variants, sha256 hex of the file text).

    Parameters
    ----------
    path : str
        The rubric file (variants separated by a ``---`` line).

    Returns
    -------
    variants : list of str
        The rubric variants.
    rubric_hash : str
        The sha256 hex of the file text.

    Raises
    ------
    ConfigError
        The file does not exist, or a variant has no ``{response}`` placeholder.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"rubric file {path} does not exist", key="rubric_file") from None
    variants = [v.strip("\n") for v in VARIANT_SEPARATOR.split(text) if v.strip()]
    for i, v in enumerate(variants):
        if "{response}" not in v:
            raise ConfigError(f"rubric {path} variant {i + 1} has no {{response}} placeholder",
                              key="rubric_file")
    return variants, hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_rubric(variant: str, prompt: str, response: str) -> str:
    """Fill ``{prompt}`` and ``{response}`` (plain replacement: braces elsewhere stay).

    Parameters
    ----------
    variant : str
        A rubric variant.
    prompt, response : str
        The texts to fill in.

    Returns
    -------
    str
        The filled-in rubric.
    """
    return variant.replace("{prompt}", prompt).replace("{response}", response)


def parse_score(text: str) -> float:
    """Parse a 0-100 score from a judge's answer.

    Tried in order: a JSON object with ``score``; the last "score/rating: N";
    the last "N/100" or "N out of 100"; the whole answer being a number.

    Parameters
    ----------
    text : str
        The judge's answer.

    Returns
    -------
    float
        The score in [0, 100].

    Raises
    ------
    MalformedResponse
        No score, or one outside 0-100.
    """
    t = text.strip()
    candidates: list[str] = []
    m = re.search(r"\{.*\}", t, re.S)
    if m:
        try:
            obj = json.loads(m.group(0))
            if isinstance(obj, dict) and isinstance(obj.get("score"), (int, float)):
                candidates.append(str(obj["score"]))
        except ValueError:
            pass
    if not candidates:
        hits = re.findall(r"(?i)\b(?:score|rating)\b[\s*:=]*(?:is|of)?[\s*:=]*" + _NUM, t)
        hits = hits or re.findall(_NUM + r"\s*(?:/|out of)\s*100\b", t)
        full = re.fullmatch(r"[\s*]*" + _NUM + r"[\s*.]*", t)
        candidates = hits[-1:] if hits else ([full.group(1)] if full else [])
    if not candidates:
        raise MalformedResponse(f"no 0-100 score in answer {t[:80]!r}")
    value = float(candidates[0])
    if not 0.0 <= value <= 100.0:
        raise MalformedResponse(f"score {value} outside 0-100 in answer {t[:80]!r}")
    return value


def yes_probability(top_logprobs: dict[str, float]) -> float:
    """P(yes) / (P(yes) + P(no)) from one position's top log-probs.

    P(yes), P(no) sum the listed tokens that read "yes" / "no" after stripping spaces
    and case. When only one of the two words is listed, the other's probability is
    at most the smallest listed one, and that bound is used: the score is pulled
    toward 0.5 rather than pushed to 0 or 1.

    Parameters
    ----------
    top_logprobs : dict of str to float
        Token -> log-probability.

    Returns
    -------
    float
        In (0, 1).

    Raises
    ------
    MalformedResponse
        Neither word is listed.
    """
    mass = {"yes": 0.0, "no": 0.0}
    finite = [lp for lp in top_logprobs.values() if lp is not None and math.isfinite(lp)]
    for tok, lp in top_logprobs.items():
        word = tok.strip().lower()
        if word in mass and lp is not None and math.isfinite(lp):
            mass[word] += math.exp(lp)
    if mass["yes"] + mass["no"] <= 0.0:
        raise MalformedResponse(f"neither Yes nor No among top tokens {list(top_logprobs)[:8]}")
    floor = math.exp(min(finite))
    yes, no = mass["yes"] or floor, mass["no"] or floor
    return yes / (yes + no)


def _yes_no(resp) -> tuple[float, str]:
    choices = getattr(resp, "choices", None)
    lp = getattr(choices[0], "logprobs", None) if choices else None
    tops = getattr(lp, "top_logprobs", None) if lp is not None else None
    if not tops or not isinstance(tops[0], dict):
        raise MalformedResponse("no top_logprobs in completion",
                                raw=getattr(choices[0], "text", None) if choices else None)
    raw = json.dumps(tops[0])
    try:
        return yes_probability(tops[0]), raw
    except MalformedResponse as exc:
        raise MalformedResponse(str(exc), raw=raw) from None


def _chat_score(resp) -> tuple[float, str]:
    text = chat_text(resp)
    try:
        return parse_score(text) / 100.0, text
    except MalformedResponse as exc:  # keep the unparseable answer for the error row
        raise MalformedResponse(str(exc), raw=text) from None


async def score_variant(client: LLMClient, sc: ScorerConfig, variant: str, prompt: str,
                        response: str, prompt_id: str,
                        repeat: int = 0) -> tuple[float | None, str | None, str | None]:
    """Score one (prompt, response) with one rubric variant: (score in [0,1], raw, error).

    Parameters
    ----------
    client : LLMClient
        The scorer's client.
    sc : ScorerConfig
        The scoring procedure.
    variant : str
        The rubric variant.
    prompt, response : str
        What is scored.
    prompt_id : str
        For the call log.
    repeat : int, default=0
        Which repetition of this same variant (when ``n_rubric_samples`` exceeds
        the number of variants); it keeps repeated samples apart in the request cache.

    Returns
    -------
    score : float or None
        In [0, 1]; None on failure.
    raw : str or None
        The answer; on failure the last answer the parser rejected (None if there was none).
    error : str or None
        The final error.
    """
    text = render_rubric(variant, prompt, response)
    common = dict(model=sc.model, prompt_id=prompt_id, max_parse_retries=sc.parse_retries,
                  sample=repeat or None)
    if sc.method == "yes_no_logprob":
        if sc.chat_template != "none":
            text = templates.render_prompt(sc.chat_template, "", text)
        n_top = 20 if client.provider.kind == "local" else 5
        res = await client.complete(text, max_tokens=1, temperature=0.0, logprobs=n_top,
                                    parse=_yes_no, **common)
    else:
        fmt = SCORE_SCHEMA if sc.method == "structured" else None
        res = await client.chat([{"role": "user", "content": text}], max_tokens=sc.max_tokens,
                                temperature=sc.temperature, response_format=fmt,
                                parse=_chat_score, **common)
    if not res.ok:
        return None, res.raw, res.error
    return res.value[0], res.value[1], None


def preflight_requirements(sc: ScorerConfig, provider: ProviderConfig) -> list[Requirement]:
    """What the scorer needs from its provider, with probes shaped like its requests.

    ``yes_no_logprob``: completion log-probs (one token at temperature 0, the stage's
    number of top log-probs, the scorer's chat template); ``parse``: chat;
    ``structured``: chat, then JSON mode (the stage's JSON-schema ``response_format``).
    Chat probes send ``temperature`` / ``max_tokens`` only when the scorer sets them.

    Parameters
    ----------
    sc : ScorerConfig
        The judge or the oracle.
    provider : ProviderConfig
        Its provider.

    Returns
    -------
    list of Requirement
        In the order they are checked (:mod:`cje.llm.stages.preflight`).
    """
    who = f"{sc.role} (method {sc.method})"
    if sc.method == "yes_no_logprob":
        text = PROBE_YES_NO if sc.chat_template == "none" else \
            templates.render_prompt(sc.chat_template, "", PROBE_YES_NO)
        n_top = 20 if provider.kind == "local" else 5
        return [Requirement("completion_logprobs", provider.name, sc.model, who, "completions",
                            {"prompt": text, "max_tokens": 1, "temperature": 0.0,
                             "logprobs": n_top})]
    chat = {"messages": [{"role": "user", "content": PROBE_SCORE}], "max_tokens": sc.max_tokens,
            "temperature": sc.temperature}
    reqs = [Requirement("chat", provider.name, sc.model, who, "chat", chat)]
    if sc.method == "structured":
        reqs.append(Requirement("json_mode", provider.name, sc.model, who, "chat",
                                {**chat, "response_format": SCORE_SCHEMA}))
    return reqs


def oracle_selection(keys: list[tuple], coverage: float, seed: int) -> set[tuple]:
    """The seeded subset of ``keys`` to label.

    Every key whose hash ``u = blake2b(seed, key) / 2**128`` (uniform in [0, 1)) is below
    ``coverage``. Each row is labelled independently with probability ``coverage`` (a
    Bernoulli / Poisson sample: about ``coverage * n`` rows, binomial spread; coverage 0 and 1
    give none and all). A row's selection depends only on its own key, so it is the
    same in every shard and never changes when rows are added or removed: adding
    prompts never asks the oracle about old rows (a fixed-size draw would reshuffle
    the whole subset).

    Parameters
    ----------
    keys : list of tuple
        Row keys, e.g. (prompt_id, draw_idx).
    coverage : float
        The labelling probability.
    seed : int
        The seed.

    Returns
    -------
    set of tuple
        The keys to label.
    """
    def u(key: tuple) -> float:
        digest = hashlib.blake2b("\x1f".join(map(str, (seed, *key))).encode(), digest_size=16)
        return int.from_bytes(digest.digest(), "big") / 2.0**128
    return {k for k in set(keys) if u(k) < coverage}


def _input_sha(row: dict) -> str:
    blob = json.dumps([row.get("prompt"), row.get("response")], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def score_responses(cfg: dict, role: str, input: str, output: str,
                    coverage: float | None = None, seed: int | None = None, shard: int = 0,
                    num_shards: int = 1, request_cache: str | None = None,
                    rate_limit_dir: str | None = None,
                    api_log: str | None = "logs/api_calls.log",
                    retry_errors: bool = True, debug: bool = False) -> dict:
    """Run the ``judge`` (role="judge") or ``oracle`` (role="oracle") stage.

    Output rows (atomic): ``prompt_id, draw_idx, policy, {judge_score|oracle_label}, status,
    error, raw, model, rubric_hash, input_sha`` (+ ``selected`` for the oracle; unselected rows
    have ``status: "not_selected"`` and a null label). ``raw`` is the scorer's answer,
    also on error rows whose answer could not be parsed. Answers come from / go to the
    request cache.

    Parameters
    ----------
    cfg : dict
        The workflow config.
    role : {'judge', 'oracle'}
        The scorer.
    input : str
        A responses JSONL (``data/responses/P.jsonl``).
    output : str
        The scores JSONL.
    coverage, seed : float or int or None, default=None
        Default to the oracle config (the judge scores every row).
    shard, num_shards : int, default=0, 1
        This job's share of the prompts (:func:`cje.llm.stages.prompts.select_shard`).
    request_cache : str or None, default=None
        The request cache folder (None: none).
    rate_limit_dir : str or None, default=None
        Shares the provider's limits across jobs.
    api_log : str or None, default='logs/api_calls.log'
        The call log.
    retry_errors : bool, default=True
        Ask again for cached final errors.
    debug : bool, default=False
        Log prompts and answers.

    Returns
    -------
    dict
        Counts.

    Raises
    ------
    ConfigError
        A bad scorer config or rubric (a 0-100 method with a rubric that never mentions 100),
        or a coverage outside [0, 1].
    InputError
        A bad input row (a scored row without its prompt).
    PreflightError
        The provider cannot do what the scorer needs (:func:`preflight_requirements`);
        nothing else is sent.
    StageFailedError
        More than ``execution.max_failed_share`` of the rows the scorer was asked about
        failed (nothing written; rows whose response was unavailable and unselected oracle
        rows do not count).
    """
    sc = scorer_config(cfg, role)
    prov = provider_config(cfg, sc.provider)
    max_share = max_failed_share(cfg)
    variants, rubric_hash = load_rubric(sc.rubric_file)
    if sc.method in ("structured", "parse") and not all("100" in v for v in variants):
        raise ConfigError(f"method '{sc.method}' asks for a 0-100 score but rubric "
                          f"{sc.rubric_file} never mentions 100 (a yes/no rubric? use e.g. "
                          f"config/rubrics/{role}_score.txt)", key=f"{role}.rubric_file")
    field = "judge_score" if role == "judge" else "oracle_label"
    rows = read_jsonl(input, required=("prompt_id", "draw_idx", "status"))
    for i, r in enumerate(rows, 1):
        if r.get("status") == "ok" and r.get("response") is not None and \
                not isinstance(r.get("prompt"), str):
            raise InputError("required field is missing (a scored row needs its prompt)",
                             path=str(input), line=i, field="prompt")
    selected = None
    if role == "oracle":
        cov = sc.coverage if coverage is None else coverage
        if not 0.0 <= cov <= 1.0:
            raise ConfigError(f"coverage must be in [0, 1], got {cov}", flag="--coverage")
        selected = oracle_selection([(r["prompt_id"], r["draw_idx"]) for r in rows], cov,
                                    sc.seed if seed is None else seed)
    mine = select_shard([r["prompt_id"] for r in rows], shard, num_shards)
    rows = sorted((r for r in rows if r["prompt_id"] in mine),
                  key=lambda r: (r["prompt_id"], r["draw_idx"]))

    def base_record(row: dict) -> dict:
        rec = {"prompt_id": row["prompt_id"], "draw_idx": row["draw_idx"],
               "policy": row.get("policy"), field: None, "status": "error", "error": None,
               "raw": None, "model": sc.model, "rubric_hash": rubric_hash,
               "input_sha": _input_sha(row)}
        if selected is not None:
            rec["selected"] = (row["prompt_id"], row["draw_idx"]) in selected
        return rec

    to_call, final = [], []
    for row in rows:
        rec = base_record(row)
        if selected is not None and not rec["selected"]:
            final.append({**rec, "status": "not_selected"})
        elif row.get("status") != "ok" or row.get("response") is None:
            final.append({**rec, "error": f"response unavailable (generation status "
                                          f"{row.get('status')!r}: {row.get('error')})"})
        else:
            to_call.append({"rec": rec, "prompt": row["prompt"], "response": row["response"]})
    del rows

    async def work(client: LLMClient, item: dict) -> dict:
        rec = dict(item["rec"])
        n, nv = sc.n_rubric_samples, len(variants)
        results = await asyncio.gather(*[
            score_variant(client, sc, variants[i % nv], item["prompt"], item["response"],
                          rec["prompt_id"], repeat=i // nv) for i in range(n)])
        errors = [e for _, _, e in results if e]
        raws = [r for _, r, _ in results]
        rec["raw"] = raws[0] if n == 1 else raws
        if errors:
            return {**rec, "status": "error", "error": "; ".join(errors)}
        return {**rec, field: float(np.mean([s for s, _, _ in results])), "status": "ok"}

    async def body(client: LLMClient) -> tuple[list[dict], dict]:
        # first: can the endpoint score as configured (one request per capability, cached)
        await run_preflight(client, preflight_requirements(sc, prov), f"{role}:{Path(input).stem}")
        return await run_items(to_call, lambda it: work(client, it),
                               desc=f"{role} {Path(input).stem}", workers=prov.max_concurrency)

    counts = {"total": 0, "ok": 0, "error": 0}
    if to_call:
        stage = f"{role}:{Path(input).stem}"
        scored, counts = run_with_client(prov, stage, api_log, body,
                                         debug=debug, request_cache=request_cache,
                                         retry_errors=retry_errors, rate_limit_dir=rate_limit_dir)
        check_failed_rows(stage, sorted(scored, key=lambda r: (r["prompt_id"], r["draw_idx"])),
                          max_share, api_log)
        final.extend(scored)
    out = sorted(final, key=lambda r: (r["prompt_id"], r["draw_idx"]))
    write_jsonl_atomic(output, out)
    counts.update(written=len(out), scored_ok=sum(r["status"] == "ok" for r in out),
                  errors=sum(r["status"] == "error" for r in out))
    if selected is not None:
        counts["selected"] = sum(bool(r.get("selected")) for r in out)
    log.info("%s %s: %s -> %s", role, input, counts, output)
    return counts
