"""The ``merge`` and ``dataset`` stages: gather shards; assemble the analysis inputs.

``merge``: concatenate shard files, keep one row per key (``policy``,
``prompt_id``, ``draw_idx`` where present; an ok row beats an error row), sort.

``dataset``: join base responses, log-probs, judge scores and oracle labels into
``cje_dataset.jsonl`` (one row per logged prompt, the base policy's draw 0) and
write ``fresh_draws/{policy}_responses.jsonl`` for every policy (all draws, with
judge score and oracle label). Rows whose generation, log-prob, judge or oracle
step failed are kept with null values and their status; nothing is filled in.
A summary of every failure kind is returned (and printed by the CLI).

On request the same frames are also written as Parquet (the columnar copy the
workflow's analyses read: ``cje analyze`` recognises Parquet by its first bytes):
the same rows, fields and types, from the same in-memory frame, each file through
the one atomic writer.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import polars as pl

from cje.atomic import atomic_writer
from cje.errors import ConfigError, InputError
from cje.llm.stages.io import dedupe_sorted, read_jsonl, write_jsonl_atomic

log = logging.getLogger(__name__)
MERGE_KEY = ("policy", "prompt_id", "draw_idx")
NO_ORACLE_FILE = "no_oracle_file"  # oracle_status when a policy has no oracle file at all


def merge_shards(inputs: list[str], output: str) -> int:
    """Gather shard JSONL files into ``output`` (atomic), deduplicated and sorted.

    Deduplicated by (policy, prompt_id, draw_idx) -- ok beats error, else the later file
    wins -- and sorted.

    Parameters
    ----------
    inputs : list of str
        The shard files.
    output : str
        The merged file.

    Returns
    -------
    int
        The number of rows written.

    Raises
    ------
    ConfigError
        No input files.
    InputError
        A bad shard file.
    """
    if not inputs:
        raise ConfigError("no input files", flag="--inputs")
    rows = [r for path in inputs for r in read_jsonl(path, required=("prompt_id",))]
    return write_jsonl_atomic(output, dedupe_sorted(rows, MERGE_KEY))


RESPONSE_SCHEMA = {"prompt_id": pl.Utf8, "prompt": pl.Utf8, "draw_idx": pl.Int64,
                   "response": pl.Utf8, "status": pl.Utf8}
LOGPROB_SCHEMA = {"prompt_id": pl.Utf8, "logprob": pl.Float64, "status": pl.Utf8}
JUDGE_SCHEMA = {"prompt_id": pl.Utf8, "draw_idx": pl.Int64, "judge_score": pl.Float64,
                "status": pl.Utf8}
ORACLE_SCHEMA = {"prompt_id": pl.Utf8, "draw_idx": pl.Int64, "oracle_label": pl.Float64,
                 "status": pl.Utf8}


def load_stage_file(path: Path, schema: dict, key: tuple[str, ...]) -> pl.DataFrame:
    """Read the ``schema`` columns of a stage's JSONL output (other fields ignored).

    Parameters
    ----------
    path : Path
        The stage's output file (an empty file gives an empty frame).
    schema : dict
        Column -> polars dtype.
    key : tuple of str
        The columns that identify a row.

    Returns
    -------
    polars.DataFrame
        The ``schema`` columns, one row per key.

    Raises
    ------
    InputError
        Naming the file (and line/field where known) when it is missing, unreadable, lacks a
        key or status, or holds a key twice (unmerged shards).
    """
    required = tuple(key) + ("status",)
    if not path.exists():
        raise InputError("file does not exist", path=str(path))
    if path.stat().st_size == 0:
        return pl.DataFrame(schema=schema)
    try:
        df = pl.read_ndjson(path, schema=schema)
    except Exception:  # polars raises several types; locate the bad line ourselves
        read_jsonl(path, required=required)
        raise InputError("could not be read as JSON lines", path=str(path)) from None
    nulls = df.with_row_index("i").filter(pl.any_horizontal(pl.col(required).is_null()))
    if nulls.height:
        read_jsonl(path, required=required)  # names line and field when a field is absent
        row = nulls.row(0, named=True)
        field = next(f for f in required if row[f] is None)
        raise InputError("required field is null", path=str(path), line=row["i"] + 1,
                         field=field)
    dup = df.filter(pl.struct(list(key)).is_duplicated())
    if dup.height:
        raise InputError(f"duplicate row for {dup.select(key).row(0, named=True)} "
                         "(merge shards first)", path=str(path), field="prompt_id")
    return df


def _ok_value(col: str, status: str) -> pl.Expr:
    """``col`` where ``status == "ok"``, else null (a failed step never leaks a value)."""
    return pl.when(pl.col(status) == "ok").then(pl.col(col)).otherwise(None)


def _with_scores(df: pl.DataFrame, judge: pl.DataFrame, oracle: pl.DataFrame | None) -> pl.DataFrame:
    """Left-join judge score and oracle label (null unless ok) + their statuses
    (``missing`` when the file has no row; ``no_oracle_file`` when there is no file)."""
    kd = ["prompt_id", "draw_idx"]
    out = df.join(judge.rename({"status": "judge_status"}), on=kd, how="left")
    if oracle is None:
        out = out.with_columns(oracle_label=pl.lit(None, pl.Float64),
                               oracle_status=pl.lit(NO_ORACLE_FILE))
    else:
        out = out.join(oracle.rename({"status": "oracle_status"}), on=kd, how="left")
    out = out.with_columns(pl.col("judge_status", "oracle_status").fill_null("missing"))
    return out.with_columns(judge_score=_ok_value("judge_score", "judge_status"),
                            oracle_label=_ok_value("oracle_label", "oracle_status"))


def _count(df: pl.DataFrame, col: str, label: str, fail: Counter,
           fine: tuple[str, ...] = ("ok",)) -> None:
    """Add the number of rows per non-fine value of ``col`` to ``fail[f"{label} {value}"]``."""
    for value, n in df.filter(~pl.col(col).is_in(fine)).group_by(col).len().iter_rows():
        fail[f"{label} {value}"] += n


def _write_frame_atomic(path: Path, df: pl.DataFrame, parquet: Path | None = None) -> int:
    """Write ``df`` as JSONL to ``path`` and, when ``parquet`` is given, as Parquet there too."""
    with atomic_writer(path) as fh:  # the one atomic writer: unique temp, fsync, rename, fsync folder
        df.write_ndjson(fh)
    if parquet is not None:
        with atomic_writer(parquet) as fh:  # the same writer: it yields a binary handle
            df.write_parquet(fh, statistics=True)  # statistics: null-free columns skipped unread
    return df.height


def assemble_dataset(cfg: dict, responses_dir: str, logprobs_dir: str, judge_dir: str,
                     oracle_dir: str, output: str, fresh_draws_dir: str, parquet_output: str | None = None,
                     parquet_fresh_draws_dir: str | None = None) -> dict:
    """Write ``output`` (``cje_dataset.jsonl``) and ``fresh_draws_dir/{policy}_responses.jsonl``.

    With ``parquet_output`` and ``parquet_fresh_draws_dir`` the same frames are also
    written as ``parquet_output`` and ``parquet_fresh_draws_dir/{policy}_responses.parquet``.

    Logged rows: base responses with ``draw_idx == 0``; ``base_policy_logprob`` and
    ``target_policy_logprobs[p]`` from ``logprobs_dir/{p}.jsonl`` (null unless that
    row's status is ok); ``metadata`` = {prompt_id, judge_score, oracle_label,
    logprob_status{p}, response_status, judge_status, oracle_status}. Joins are
    polars left joins on prompt_id (and draw_idx).

    Parameters
    ----------
    cfg : dict
        The workflow config (``base_policy``, ``policies``).
    responses_dir, logprobs_dir, judge_dir, oracle_dir : str
        Folders of the stages' ``{policy}.jsonl`` files (an oracle file may be missing).
    output : str
        ``cje_dataset.jsonl``.
    fresh_draws_dir : str
        Folder of the ``{policy}_responses.jsonl`` files.
    parquet_output : str or None, default=None
        The columnar copy of ``output`` (both or neither of the two Parquet arguments).
    parquet_fresh_draws_dir : str or None, default=None
        Folder of the ``{policy}_responses.parquet`` copies.

    Returns
    -------
    dict
        The summary: rows written and counts of every failure kind.

    Raises
    ------
    ConfigError
        The base policy is not in ``policies``, or there is no target policy, or only one
        of the two Parquet arguments is given.
    InputError
        A stage file is missing or bad (:func:`load_stage_file`).
    """
    if (parquet_output is None) != (parquet_fresh_draws_dir is None):
        raise ConfigError("give both or neither of the Parquet output and its fresh-draws folder",
                          key="--parquet-output" if parquet_output is None else "--parquet-fresh-draws-dir")
    base = cfg.get("base_policy", "base")
    policies = list((cfg.get("policies") or {}).keys())
    if base not in policies:
        raise ConfigError(f"base policy '{base}' is not in policies", key="base_policy")
    targets = [p for p in policies if p != base]
    if not targets:
        raise ConfigError("no target policy: add one besides the base policy", key="policies")
    rdir, ldir, jdir, odir = map(Path, (responses_dir, logprobs_dir, judge_dir, oracle_dir))
    kd = ("prompt_id", "draw_idx")
    fail: Counter = Counter()

    frames: dict[str, pl.DataFrame] = {}

    def responses_with_scores(policy: str) -> pl.DataFrame:
        if policy not in frames:
            frames[policy] = _load_scored(policy)
        return frames[policy]

    def _load_scored(policy: str) -> pl.DataFrame:
        resp = load_stage_file(rdir / f"{policy}.jsonl", RESPONSE_SCHEMA, kd)
        judge = load_stage_file(jdir / f"{policy}.jsonl", JUDGE_SCHEMA, kd)
        opath = odir / f"{policy}.jsonl"
        oracle = load_stage_file(opath, ORACLE_SCHEMA, kd) if opath.exists() else None
        if oracle is None:
            fail[f"oracle file missing: {opath}"] += 1
        resp = resp.rename({"status": "response_status"}).with_columns(
            response=_ok_value("response", "response_status"))
        return _with_scores(resp, judge, oracle).sort(list(kd))

    # logged data: the base policy's draw 0, with every policy's log-prob of it
    logged = responses_with_scores(base).filter(pl.col("draw_idx") == 0)
    for p in [base] + targets:
        lp = load_stage_file(ldir / f"{p}.jsonl", LOGPROB_SCHEMA, ("prompt_id",))
        logged = (logged.join(lp.select("prompt_id", pl.col("logprob").alias(f"lp:{p}"),
                                        pl.col("status").alias(f"lps:{p}")),
                              on="prompt_id", how="left")
                  .with_columns(pl.col(f"lps:{p}").fill_null("missing"))
                  .with_columns(_ok_value(f"lp:{p}", f"lps:{p}").alias(f"lp:{p}")))
        _count(logged, f"lps:{p}", f"logged: logprob {p}", fail)
    _count(logged, "response_status", "logged: generation", fail)
    _count(logged, "judge_status", "logged: judge", fail)
    _count(logged, "oracle_status", "logged: oracle", fail,
           fine=("ok", "not_selected", NO_ORACLE_FILE))
    out = logged.select(
        "prompt_id", "prompt", "response",
        pl.col(f"lp:{base}").alias("base_policy_logprob"),
        pl.struct([pl.col(f"lp:{t}").alias(t) for t in targets]).alias("target_policy_logprobs"),
        pl.struct("prompt_id", "judge_score", "oracle_label",
                  pl.struct([pl.col(f"lps:{p}").alias(p) for p in [base] + targets])
                  .alias("logprob_status"),
                  "response_status", "judge_status", "oracle_status").alias("metadata"))
    summary: dict = {"logged_rows": _write_frame_atomic(Path(output), out,
                                                        parquet_output and Path(parquet_output)),
                     "fresh_draws": {}}

    # fresh draws: every policy's responses (all draws) with their scores
    for p in [base] + targets:
        fresh = responses_with_scores(p)
        _count(fresh, "response_status", f"fresh {p}: generation", fail)
        _count(fresh, "judge_status", f"fresh {p}: judge", fail)
        _count(fresh, "oracle_status", f"fresh {p}: oracle", fail,
               fine=("ok", "not_selected", NO_ORACLE_FILE))
        rows = fresh.select("prompt_id", "prompt", "response", "draw_idx", "judge_score",
                            "oracle_label", "response_status", "judge_status", "oracle_status")
        columnar = Path(parquet_fresh_draws_dir) / f"{p}_responses.parquet" if parquet_fresh_draws_dir else None
        summary["fresh_draws"][p] = _write_frame_atomic(
            Path(fresh_draws_dir) / f"{p}_responses.jsonl", rows, columnar)
    summary["failures"] = dict(fail)
    return summary


def format_summary(summary: dict) -> str:
    """Human-readable dataset summary: rows written, then every failure kind's count.

    Parameters
    ----------
    summary : dict
        What :func:`assemble_dataset` returned.

    Returns
    -------
    str
        The summary as text.
    """
    lines = [f"cje_dataset.jsonl: {summary['logged_rows']} logged rows; fresh draws: "
             + ", ".join(f"{p}={n}" for p, n in summary["fresh_draws"].items())]
    if summary["failures"]:
        lines.append("rows kept with null values (by failure kind):")
        lines += [f"  {k}: {n}" for k, n in sorted(summary["failures"].items())]
    else:
        lines.append("no failed rows")
    return "\n".join(lines)
