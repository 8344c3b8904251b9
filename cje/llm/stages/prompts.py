"""The ``prompts`` stage: read a prompt source, filter, take a seeded subset.

Sources (``prompts.source`` in config, or ``--source``):

- a local JSONL with ``prompt_id`` and ``prompt`` per line (``prompt_id`` may be
  omitted: it is then ``p_`` + the first 12 hex of sha256(prompt));
- a local JSONL in the ``lmsys/chatbot_arena_conversations`` format
  (``question_id``, ``conversation_a`` [{role, content}], ``language``,
  ``openai_moderation`` {flagged}); the Arena filters are applied;
- a Hugging Face dataset name (e.g. ``agie-ai/lmsys-chatbot_arena_conversations``),
  loaded with the optional ``datasets`` package, same filters.

Arena filters (as in the CJE reference): first user turn of ``conversation_a``;
``language == "English"``; rows flagged by OpenAI moderation removed; empty
prompts removed; exact duplicates removed (first occurrence kept). The
prompt_id is ``arena_<question_id>``: stable across reruns and filter changes.

``--n-samples N --seed S`` draws N rows without replacement with
``numpy.random.default_rng(S)`` from the filtered rows sorted by prompt_id, so
the subset is reproducible; the output is sorted by prompt_id.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl

from cje.errors import ConfigError, InputError
from cje.llm.stages.io import write_jsonl_atomic

log = logging.getLogger(__name__)
ARENA_COLUMNS = ("question_id", "conversation_a")


def _find_bad_line(path: Path) -> InputError:
    """Locate the first unreadable line of ``path`` for a precise error."""
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    return InputError("line is not a JSON object", path=str(path), line=i)
            except ValueError as exc:
                return InputError(f"not valid JSON ({exc})", path=str(path), line=i)
    return InputError("could not be read as JSON lines", path=str(path))


def read_source_frame(source: str) -> tuple[pl.DataFrame, str]:
    """Load ``source`` (local JSONL path or HF dataset name) as a polars frame.

    Parameters
    ----------
    source : str
        A local JSONL path or a Hugging Face dataset name.

    Returns
    -------
    frame : polars.DataFrame
        The source's rows.
    description : str
        The path, or ``huggingface:<name>``.

    Raises
    ------
    InputError
        An unreadable or missing file.
    ConfigError
        A dataset name is given but ``datasets`` is missing.
    """
    path = Path(source)
    if path.exists():
        try:
            return pl.read_ndjson(path, infer_schema_length=None), str(path)
        except Exception:  # polars raises several types; find the line ourselves
            raise _find_bad_line(path) from None
    if source.endswith((".jsonl", ".json")) or "/" not in source:
        raise InputError("prompt source file does not exist", path=source)
    try:
        import datasets  # optional: only for Hugging Face dataset names
    except ModuleNotFoundError:
        raise ConfigError(f"'{source}' is not a local file, and loading it as a Hugging Face "
                          "dataset needs the 'datasets' package (pip install datasets)",
                          key="prompts.source") from None
    ds = datasets.load_dataset(source, split="train")
    return ds.to_polars(), f"huggingface:{source}"


def arena_filter(df: pl.DataFrame, where: str = "") -> tuple[pl.DataFrame, dict]:
    """Apply the Arena filters to rows in the chatbot-arena-conversations format.

    Parameters
    ----------
    df : polars.DataFrame
        Frame with ``question_id``, ``conversation_a`` (list of {role, content}),
        optional ``language`` and ``openai_moderation`` ({flagged}).
    where : str, default=''
        The source, for error messages.

    Returns
    -------
    frame : polars.DataFrame
        ``prompt_id``, ``prompt``.
    counts : dict
        Rows removed per filter (and ``rows``, ``kept``).

    Raises
    ------
    InputError
        A required column is missing.
    """
    for col in ARENA_COLUMNS:
        if col not in df.columns:
            raise InputError(f"arena-format rows need '{col}'", path=where or None, field=col)
    counts = {"rows": df.height}
    first_user = (pl.col("conversation_a")
                  .list.eval(pl.element().filter(pl.element().struct.field("role") == "user")
                             .struct.field("content"))
                  .list.first())
    out = df.with_columns(prompt=first_user,
                          prompt_id=pl.lit("arena_") + pl.col("question_id").cast(pl.Utf8))
    if "language" in out.columns:
        before = out.height
        out = out.filter(pl.col("language") == "English")
        counts["not_english"] = before - out.height
    if "openai_moderation" in out.columns:
        before = out.height
        flagged = pl.col("openai_moderation").struct.field("flagged").fill_null(False)
        out = out.filter(~flagged)
        counts["moderation_flagged"] = before - out.height
    before = out.height
    out = out.filter(pl.col("prompt").is_not_null() & (pl.col("prompt").str.strip_chars() != ""))
    counts["no_user_turn"] = before - out.height
    before = out.height
    out = out.unique(subset="prompt", keep="first", maintain_order=True)
    counts["duplicates"] = before - out.height
    counts["kept"] = out.height
    return out.select("prompt_id", "prompt"), counts


def plain_prompts(df: pl.DataFrame, where: str = "") -> pl.DataFrame:
    """Normalise a (prompt_id?, prompt) frame: derive missing ids, reject duplicates.

    Parameters
    ----------
    df : polars.DataFrame
        Rows with ``prompt`` and optionally ``prompt_id``.
    where : str, default=''
        The source, for error messages.

    Returns
    -------
    polars.DataFrame
        ``prompt_id``, ``prompt``.

    Raises
    ------
    InputError
        No ``prompt`` column, an empty prompt or prompt_id, or a repeated prompt_id.
    """
    if "prompt" not in df.columns:
        raise InputError("rows need 'prompt' (or the arena format)", path=where or None,
                         field="prompt")
    prompt_hash = pl.col("prompt").map_elements(
        lambda s: "p_" + hashlib.sha256(s.encode()).hexdigest()[:12], return_dtype=pl.Utf8)
    if "prompt_id" not in df.columns:
        df = df.with_columns(prompt_id=prompt_hash)
    else:
        df = df.with_columns(prompt_id=pl.col("prompt_id").cast(pl.Utf8))
    bad = df.with_row_index("i").filter(pl.col("prompt").is_null() | pl.col("prompt_id").is_null()
                                        | (pl.col("prompt").cast(pl.Utf8).str.strip_chars() == ""))
    if bad.height:
        raise InputError("prompt or prompt_id is empty", path=where or None,
                         line=int(bad["i"][0]) + 1, field="prompt")
    dup = df.filter(pl.col("prompt_id").is_duplicated())
    if dup.height:
        raise InputError(f"prompt_id {dup['prompt_id'][0]!r} occurs more than once",
                         path=where or None, field="prompt_id")
    return df.select("prompt_id", pl.col("prompt").cast(pl.Utf8))


def seeded_subset(df: pl.DataFrame, n_samples: int | None, seed: int) -> pl.DataFrame:
    """N rows drawn without replacement by ``default_rng(seed)`` from the rows sorted by prompt_id.

    All rows when N is None or >= height; the output is sorted by prompt_id.

    Parameters
    ----------
    df : polars.DataFrame
        Rows with ``prompt_id``.
    n_samples : int or None
        N.
    seed : int
        The seed.

    Returns
    -------
    polars.DataFrame
        The subset, sorted by prompt_id.

    Raises
    ------
    ConfigError
        N < 1.
    """
    df = df.sort("prompt_id")
    if n_samples is None or n_samples >= df.height:
        return df
    if n_samples < 1:
        raise ConfigError("must be >= 1", key="prompts.n_samples")
    idx = np.sort(np.random.default_rng(seed).choice(df.height, size=n_samples, replace=False))
    return df[idx]


def make_prompts(source: str, output: str, n_samples: int | None = None,
                 seed: int = 42) -> dict:
    """Run the ``prompts`` stage: read ``source``, filter, subset, write ``output``.

    Parameters
    ----------
    source : str
        A local JSONL path or a Hugging Face dataset name.
    output : str
        The JSONL written (``prompt_id``, ``prompt``; atomic).
    n_samples : int or None, default=None
        Rows kept (None: all).
    seed : int, default=42
        Seed of the subset.

    Returns
    -------
    dict
        Counts per step.

    Raises
    ------
    InputError
        An unreadable source or bad rows.
    ConfigError
        A dataset name without ``datasets``, or ``n_samples`` < 1.
    """
    df, where = read_source_frame(source)
    if all(c in df.columns for c in ARENA_COLUMNS):
        df, counts = arena_filter(df, where)
    else:
        df = plain_prompts(df, where)
        counts = {"rows": df.height, "kept": df.height}
    df = seeded_subset(df, n_samples, seed)
    counts["written"] = write_jsonl_atomic(output, df.to_dicts())
    log.info("prompts from %s: %s -> %s", where, counts, output)
    return counts


def select_shard(prompt_ids: list[str], shard: int, num_shards: int) -> set[str]:
    """The prompt_ids shard ``shard`` of ``num_shards`` owns.

    The sorted ids at positions i with i % num_shards == shard (disjoint, covering, balanced).

    Parameters
    ----------
    prompt_ids : list of str
        Every prompt id (repeats allowed).
    shard : int
        The shard, in [0, num_shards).
    num_shards : int
        Shards, >= 1.

    Returns
    -------
    set of str
        The shard's prompt ids.

    Raises
    ------
    ConfigError
        ``shard`` or ``num_shards`` out of range.
    """
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ConfigError(f"need 0 <= shard < num_shards, got shard={shard}, "
                          f"num_shards={num_shards}", flag="--shard")
    ids = sorted(set(prompt_ids))
    return set(ids[shard::num_shards])
