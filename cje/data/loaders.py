"""Loading and validating logged data and fresh draws (statistics.md section 1).

Both layouts are accepted: the pipeline's own files keep ``judge_score`` and
``oracle_label`` under ``metadata``; the arena sample keeps them at the top level.
``prompt_id`` is read from the top level, then ``metadata.prompt_id``, else a
stable hash of the prompt text. All checks are vectorised over rows; only the
error paths look for the offending line.

A file is JSONL or Parquet (:mod:`cje.data.tables`, told apart by its first bytes),
with the same field names and the same checks. Only the fields an analysis uses
are read (``LOGGED_FIELDS``, ``FRESH_FIELDS``; a response only as its length):
prompts and responses are checked from the file's types and null counts, never
loaded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cje.atomic import path_kind
from cje.data.fields import check_text_type, integer_field, numeric_field, text_field
from cje.data.jsonl import JsonlFile, read_bytes_checked
from cje.data.tables import DataFile, open_data, raw_rows
from cje.errors import ConfigError, InputError
from cje.names import target_policy_name

__all__ = ["LoggedData", "FreshDraws", "load_logged_data", "load_fresh_draws",
           "load_fresh_draws_dir", "fresh_draw_files", "logprob_invalid_reason", "LOGGED_FIELDS",
           "FRESH_FIELDS", "FRESH_DRAW_SUFFIXES"]

LOGPROB_REASONS = ("null", "nan", "inf", "positive")
#: The file names a policy's fresh draws may have, ``{policy}_responses{suffix}``.
FRESH_DRAW_SUFFIXES = (".jsonl", ".parquet")


@dataclass
class LoggedData:
    """Logged (base-policy) rows ready for analysis; arrays are aligned by row.

    Parameters
    ----------
    path : str
        The file the rows were read from.
    prompt_ids : ndarray of str
        Unique prompt ids.
    judge_scores : ndarray
        Judge score S in [0, 1] (NaN where missing: the row is dropped for every policy).
    oracle_labels : ndarray
        Oracle label Y in [0, 1], NaN where absent.
    base_logprobs : ndarray
        log pi0(A|X); NaN where invalid.
    target_logprobs : dict of str to ndarray
        {policy: log pi'(A|X)}; NaN where invalid.
    valid : dict of str to ndarray of bool
        {policy: bool mask}, rows usable for that policy (both log-probs valid and a judge score).
    dropped : dict of str to dict
        {policy: {reason: count}} rows dropped for that policy only.
    response_lengths : ndarray or None
        Characters in the response (the two-stage calibration's covariate); None when not
        read (``load_logged_data(..., response_lengths=False)``).
    n_rows_dropped_missing_judge : int, default=0
        Rows without a judge score.
    """

    path: str
    prompt_ids: np.ndarray
    judge_scores: np.ndarray
    oracle_labels: np.ndarray
    base_logprobs: np.ndarray
    target_logprobs: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    dropped: dict[str, dict[str, int]]
    response_lengths: np.ndarray | None
    n_rows_dropped_missing_judge: int = 0

    @property
    def n(self) -> int:
        """Number of logged rows."""
        return int(self.prompt_ids.shape[0])

    @property
    def target_policies(self) -> list[str]:
        """The target policies, in file order."""
        return list(self.target_logprobs)


@dataclass
class FreshDraws:
    """Fresh draws of one target policy: one row per (prompt_id, draw_idx).

    Parameters
    ----------
    policy : str
        The target policy.
    path : str
        The file the draws were read from.
    prompt_ids : ndarray of str
        The prompt of each draw.
    judge_scores : ndarray
        Judge score S' in [0, 1] of each draw.
    oracle_labels : ndarray
        Oracle label in [0, 1], NaN where absent.
    draw_idx : ndarray of int64
        The draw's index within its prompt.
    n_dropped_missing_judge : int, default=0
        Draws dropped for a missing judge score.
    response_lengths : ndarray or None, default=None
        Characters of each response (NaN when the file has no responses); None when not read.
    """

    policy: str
    path: str
    prompt_ids: np.ndarray
    judge_scores: np.ndarray
    oracle_labels: np.ndarray
    draw_idx: np.ndarray
    n_dropped_missing_judge: int = 0
    response_lengths: np.ndarray | None = None  # characters; NaN/None when the file has no responses

    @property
    def n(self) -> int:
        """Number of draws."""
        return int(self.prompt_ids.shape[0])


def _stable_prompt_hash(prompts: list[str]) -> list[str]:
    return ["p_" + hashlib.blake2b(p.encode("utf-8"), digest_size=8).hexdigest() for p in prompts]


def _repeats(keys: pl.DataFrame) -> np.ndarray:
    """Rows whose key already appeared on an earlier row (vectorised)."""
    key = pl.col(keys.columns[0]) if keys.width == 1 else pl.struct(pl.all())
    return keys.select(key.is_first_distinct().not_()).to_series().to_numpy()


def _at(file: DataFile, mask_or_index: np.ndarray | int) -> dict[str, int]:
    """Where the first row of a mask (or row ``index``) is: ``{"line": n}`` or ``{"row": i}`` (error paths)."""
    index = mask_or_index if isinstance(mask_or_index, (int, np.integer)) else int(np.flatnonzero(mask_or_index)[0])
    return file.location(int(index))


def _check_unit_interval(values: np.ndarray, file: DataFile, name: str) -> None:
    bad = np.isfinite(values) & ((values < 0) | (values > 1))
    bad |= np.isinf(values)
    if bad.any():
        value = float(values[np.flatnonzero(bad)[0]])
        raise InputError(f"value {value:g} is outside [0, 1]", path=file.path, field=name, **_at(file, bad))


def _scores_and_labels(frame: pl.DataFrame, file: DataFile) -> tuple[np.ndarray, np.ndarray]:
    """Judge scores (required) and oracle labels (NaN where absent), both checked to lie in [0, 1].

    A file in which every judge score is null is an error about the judge (a failed
    judge stage), not a later complaint about too few oracle labels.
    """
    path = file.path
    judge = numeric_field(frame, "judge_score", path)
    if judge is None:
        raise InputError("required field is missing", path=path, field="judge_score", **_at(file, 0))
    _check_unit_interval(judge, file, "judge_score")
    if judge.size and not np.isfinite(judge).any():
        raise InputError(f"every judge_score is null ({judge.size} rows): the judge produced no scores "
                         "(check the judge stage and its log)", path=path, field="judge_score")
    oracle = numeric_field(frame, "oracle_label", path)
    if oracle is None:
        oracle = np.full(file.n_rows, np.nan)
    _check_unit_interval(oracle, file, "oracle_label")
    return judge, oracle


def _required_text(file: DataFile, name: str) -> None:
    """A text field every row must have: checked from the schema and the null rows, never read."""
    if name not in file.schema:
        raise InputError("required field is missing", path=file.path, field=name, **_at(file, 0))
    check_text_type(file.schema, name, file.path)
    missing = file.null_rows(name)
    if missing.size:
        raise InputError("required field is missing or null", path=file.path, field=name,
                         **_at(file, int(missing[0])))


def _prompt_ids(frame: pl.DataFrame, file: DataFile) -> pl.Series:
    """prompt_id (top level, then metadata), else a stable hash of the prompt (read only then)."""
    ids = text_field(frame, "prompt_id", file.path, allow_integer=True)
    if ids is None or ids.is_null().any():
        if "prompt" not in file.schema:
            raise InputError("prompt_id is missing and there is no prompt to derive it from",
                             path=file.path, field="prompt_id")
        prompts = text_field(file.read(["prompt"]), "prompt", file.path)
        hashed = pl.Series(_stable_prompt_hash(prompts.fill_null("").to_list()))
        ids = hashed if ids is None else pl.select(pl.coalesce(ids, hashed)).to_series()
    return ids.alias("prompt_id")


def logprob_invalid_reason(values: np.ndarray) -> np.ndarray:
    """Classify log-probs: '' when valid (finite and <= 0), else nan/inf/positive.

    NaN stands for JSON null here; the caller marks nulls 'null' from the column's null mask.

    Parameters
    ----------
    values : ndarray of float
        Log-probs.

    Returns
    -------
    ndarray of object
        Reasons ('', 'nan', 'inf' or 'positive'), same shape.
    """
    reasons = np.full(values.shape, "", dtype=object)
    reasons[np.isinf(values)] = "inf"
    reasons[np.isfinite(values) & (values > 0)] = "positive"
    reasons[np.isnan(values)] = "nan"
    return reasons


def _logprob_column(series: pl.Series, path: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (values with NaN where invalid, reason array) for one log-prob column."""
    values = numeric_field(None, name, path, series=series, label=name)
    reasons = logprob_invalid_reason(values)
    reasons[series.is_null().to_numpy()] = "null"
    values = np.where(reasons == "", values, np.nan)
    return values, reasons


def _check_logprob_keys(file: DataFile, frame: pl.DataFrame) -> None:
    """A null log-prob is 'invalid' (dropped); an absent key is an error. Only JSONL tells them
    apart, by the text of the lines whose value is null (none: nothing is read)."""
    for name in ("base_policy_logprob", "target_policy_logprobs"):
        if name not in file.schema:
            raise InputError("required log-prob field is missing", path=file.path, field=name, **_at(file, 0))
    if not isinstance(file, JsonlFile):
        return
    for name in ("base_policy_logprob", "target_policy_logprobs"):
        null = frame.get_column(name).is_null().to_numpy()
        if not null.any():
            continue
        key = f'"{name}"'.encode()
        lines = [ln for ln in read_bytes_checked(file.path).split(b"\n") if ln.strip()]
        absent = np.array([key not in ln for ln in lines]) & null
        if absent.any():
            raise InputError("required log-prob field is missing", path=file.path, field=name,
                             **_at(file, absent))


def _check_policy_name(policy: str, path: str) -> None:
    """A ``target_policy_logprobs`` key must be a safe file-name component and not ``base``
    (:func:`cje.names.target_policy_name`): ``../../x`` would otherwise make the fresh-draws lookup
    read outside its folder, and a target ``base`` would be taken for the logged policy's row."""
    try:
        target_policy_name(policy, "policy name")
    except ConfigError:
        location = next((where for where, row in raw_rows(path, "target_policy_logprobs")
                         if isinstance(row, dict) and isinstance(row.get("target_policy_logprobs"), dict)
                         and policy in row["target_policy_logprobs"]), {})
        target_policy_name(policy, "policy name", path=path, field="target_policy_logprobs", **location)


def _policies_in_file_order(path: str | Path, names: list[str]) -> list[str]:
    """The target policies in file order: the keys of the first row's ``target_policy_logprobs``,
    then any that appear only later, sorted. The struct polars infers over all rows orders its
    fields by hash with many policies (300 targets: 't132' first), so the order of policies in
    every output changed with the file's size and between processes."""
    first = next((list(row["target_policy_logprobs"]) for _, row in raw_rows(path, "target_policy_logprobs")
                  if isinstance(row, dict) and isinstance(row.get("target_policy_logprobs"), dict)), [])
    known = set(names)
    head = [n for n in dict.fromkeys(first) if n in known]
    return head + sorted(known - set(head))


#: The fields an analysis reads from a logged row; prompt and response are checked, never read.
LOGGED_FIELDS = ("prompt_id", "metadata", "judge_score", "oracle_label", "base_policy_logprob",
                 "target_policy_logprobs")
#: The fields an analysis reads from a fresh draw (the response only as its length).
FRESH_FIELDS = ("prompt_id", "metadata", "judge_score", "oracle_label", "draw_idx")


def load_logged_data(path: str | Path, response_lengths: bool = True) -> LoggedData:
    """Load and validate a logged-data file (JSONL or Parquet, told apart by its first bytes).

    Only the fields an analysis uses are read (``LOGGED_FIELDS``; the response as its
    length); ``prompt`` and ``response`` are checked from the file's types and null
    counts. Invalid log-probs (null, NaN, +-inf, > 0) are not errors: the row is
    dropped for the policies concerned and counted by reason. Rows without a judge
    score are dropped for every policy and counted.

    Parameters
    ----------
    path : str or Path
        The logged-data JSONL or Parquet file.
    response_lengths : bool, default=True
        Read each response's length (the covariate of the two-stage calibration);
        False leaves ``response_lengths`` None and the texts unread.

    Returns
    -------
    LoggedData
        The validated rows, with per-policy validity masks and drop counts.

    Raises
    ------
    InputError
        Naming file, line (JSONL) or row (Parquet) and field: malformed JSON, missing
        ``prompt``/``response``/``base_policy_logprob``/``target_policy_logprobs``, duplicate
        ``prompt_id``, judge score or oracle label outside [0, 1], every judge score null, a
        field of the wrong type (a number given as a string or boolean,
        :mod:`cje.data.fields`), a policy name that is not a safe file-name component.
    """
    path = str(path)
    file = open_data(path)
    _required_text(file, "prompt")
    _required_text(file, "response")
    frame = file.read(LOGGED_FIELDS, lengths=("response",) if response_lengths else ())
    _check_logprob_keys(file, frame)
    target_struct = frame.get_column("target_policy_logprobs")
    if not isinstance(target_struct.dtype, pl.Struct) or not target_struct.dtype.fields:
        raise InputError("must be an object {policy: log-prob} with at least one policy",
                         path=path, field="target_policy_logprobs", **_at(file, 0))
    policies = _policies_in_file_order(path, [f.name for f in target_struct.dtype.fields])
    for policy in policies:  # a policy name becomes {policy}_responses.jsonl
        _check_policy_name(policy, path)

    ids_series = _prompt_ids(frame, file)
    dup = _repeats(ids_series.to_frame())
    prompt_ids = ids_series.to_numpy().astype(str)
    if dup.any():
        ids = sorted(set(prompt_ids[dup].tolist()))
        raise InputError(f"duplicate prompt_id ({len(ids)} ids repeated, e.g. {ids[:5]})",
                         path=path, field="prompt_id", **_at(file, dup))

    judge, oracle = _scores_and_labels(frame, file)

    base_lp, base_reason = _logprob_column(frame.get_column("base_policy_logprob"), path,
                                           "base_policy_logprob")
    has_judge = np.isfinite(judge)
    targets: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    dropped: dict[str, dict[str, int]] = {}
    for policy in policies:
        lp, reason = _logprob_column(target_struct.struct.field(policy), path,
                                     f"target_policy_logprobs.{policy}")
        counts: dict[str, int] = {}
        for r in LOGPROB_REASONS:
            nb = int(np.sum((base_reason == r) & has_judge))
            if nb:
                counts[f"base_logprob_{r}"] = nb
            nt = int(np.sum((base_reason == "") & (reason == r) & has_judge))
            if nt:
                counts[f"target_logprob_{r}"] = nt
        if not has_judge.all():
            counts["missing_judge_score"] = int((~has_judge).sum())
        targets[policy] = lp
        valid[policy] = (base_reason == "") & (reason == "") & has_judge
        dropped[policy] = counts
    lengths = frame.get_column("response").to_numpy().astype(float) if response_lengths else None
    return LoggedData(path=path, prompt_ids=prompt_ids, judge_scores=judge, oracle_labels=oracle,
                      base_logprobs=base_lp, target_logprobs=targets, valid=valid, dropped=dropped,
                      response_lengths=lengths,
                      n_rows_dropped_missing_judge=int((~has_judge).sum()))


def load_fresh_draws(path: str | Path, policy: str, response_lengths: bool = True) -> FreshDraws:
    """Load one policy's fresh draws (``prompt_id``, ``judge_score``, ``draw_idx``, optional ``oracle_label``).

    JSONL or Parquet, told apart by the first bytes; only ``FRESH_FIELDS`` are read (the
    response as its length). Draws without a judge score (a failed judge call) are
    dropped and counted.

    Parameters
    ----------
    path : str or Path
        The policy's ``{policy}_responses.jsonl`` or ``.parquet``.
    policy : str
        The target policy.
    response_lengths : bool, default=True
        Read each response's length (the covariate of the two-stage calibration);
        False leaves ``response_lengths`` None and the texts unread.

    Returns
    -------
    FreshDraws
        The draws with a judge score, and the count of those dropped.

    Raises
    ------
    InputError
        Naming file, line (row) and field: malformed JSON, missing prompt_id, judge score or
        oracle label outside [0, 1], duplicate (prompt_id, draw_idx).
    """
    path = str(path)
    file = open_data(path)
    check_text_type(file.schema, "prompt", path)
    check_text_type(file.schema, "response", path)
    with_lengths = response_lengths and "response" in file.schema
    frame = file.read(FRESH_FIELDS, lengths=("response",) if with_lengths else ())
    ids_series = _prompt_ids(frame, file)
    judge, oracle = _scores_and_labels(frame, file)
    draw_idx = integer_field(frame, "draw_idx", path, minimum=0)
    if draw_idx is None:
        draw_idx = np.zeros(file.n_rows, dtype=np.int64)
    dup = _repeats(pl.DataFrame([ids_series, pl.Series("d", draw_idx)]))
    prompt_ids = ids_series.to_numpy().astype(str)
    if dup.any():
        raise InputError("duplicate (prompt_id, draw_idx)", path=path, field="draw_idx", **_at(file, dup))
    keep = np.isfinite(judge)
    lengths = None
    if response_lengths:
        lengths = (frame.get_column("response").fill_null(0).to_numpy().astype(float) if with_lengths
                   else np.full(file.n_rows, np.nan))[keep]
    return FreshDraws(policy=policy, path=path, prompt_ids=prompt_ids[keep], judge_scores=judge[keep],
                      oracle_labels=oracle[keep], draw_idx=draw_idx[keep],
                      n_dropped_missing_judge=int((~keep).sum()), response_lengths=lengths)


def fresh_draw_files(directory: str | Path, policies: list[str]) -> tuple[dict[str, Path], list[str]]:
    """``({policy: directory/{policy}_responses.jsonl or .parquet}, [policies without either])``.

    Each policy name is checked with :func:`cje.names.target_policy_name` before it
    becomes a path. A folder holding both files of one policy is an error: which
    one is meant would otherwise be a guess.

    Parameters
    ----------
    directory : str or Path
        The fresh-draws folder.
    policies : list of str
        The target policies.

    Returns
    -------
    found : dict of str to Path
        The file of each policy that has one.
    missing : list of str
        The policies without one.

    Raises
    ------
    InputError
        ``directory`` is missing, is a file, a dangling symlink or a symlink loop; a policy
        has both a ``.jsonl`` and a ``.parquet`` file.
    ConfigError
        A policy name is not a safe file-name component.
    """
    directory = Path(directory)
    where = str(directory)
    try:
        is_dir = directory.is_dir()
    except OSError:  # Python < 3.12 raises on a symlink loop
        is_dir = False
    if not is_dir:
        if directory.is_symlink() and not directory.exists():
            try:
                directory.resolve(strict=True)
            except RuntimeError:
                raise InputError("fresh-draws folder is a symbolic link loop", path=where) from None
            except OSError:
                pass
        kind = path_kind(directory)
        what = "not found" if kind == "missing" else f"is {kind}, not a folder"
        raise InputError(f"fresh-draws folder {what}", path=where)
    found, missing = {}, []
    for policy in policies:
        stem = f"{target_policy_name(policy, 'policy name')}_responses"
        files = [directory / f"{stem}{ext}" for ext in FRESH_DRAW_SUFFIXES
                 if os.path.lexists(directory / f"{stem}{ext}")]
        if len(files) > 1:
            raise InputError(f"both {files[0].name} and {files[1].name} are here: keep one (the fresh draws "
                             f"of '{policy}' must come from one file)", path=where)
        if files:
            found[policy] = files[0]
        else:
            missing.append(policy)
    return found, missing


def load_fresh_draws_dir(directory: str | Path, policies: list[str],
                         response_lengths: bool = True) -> dict[str, FreshDraws]:
    """Load ``{directory}/{policy}_responses.jsonl`` (or ``.parquet``) for each policy that has one.

    A policy without its file is not an error here (IPS estimators only use fresh
    draws for diagnostics and ground truth): :func:`fresh_draw_files` lists them so
    the analysis reports them (``metadata.fresh_draws_missing`` and a warning), and
    estimators that need fresh draws refuse to run without them.

    Parameters
    ----------
    directory : str or Path
        The fresh-draws folder.
    policies : list of str
        The target policies.
    response_lengths : bool, default=True
        As in :func:`load_fresh_draws`.

    Returns
    -------
    dict of str to FreshDraws
        {policy: draws} for the policies with a file.

    Raises
    ------
    InputError
        A file that exists but cannot be read (a folder, a symlink loop, empty, malformed),
        or the folder itself is missing (:func:`fresh_draw_files`).
    """
    found, _missing = fresh_draw_files(directory, policies)
    return {policy: load_fresh_draws(file, policy, response_lengths) for policy, file in found.items()}
