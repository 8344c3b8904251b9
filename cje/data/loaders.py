"""Loading and validating logged data and fresh draws (statistics.md section 1).

Both layouts are accepted: the pipeline's own files keep ``judge_score`` and
``oracle_label`` under ``metadata``; the arena sample keeps them at the top level.
``prompt_id`` is read from the top level, then ``metadata.prompt_id``, else a
stable hash of the prompt text. All checks are vectorised over rows; only the
error paths look for the offending line.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cje.atomic import path_kind
from cje.data.fields import integer_field, numeric_field, raw_rows, text_field
from cje.data.jsonl import nonblank_line_numbers, read_jsonl_frame
from cje.errors import ConfigError, InputError
from cje.names import target_policy_name

__all__ = ["LoggedData", "FreshDraws", "load_logged_data", "load_fresh_draws",
           "load_fresh_draws_dir", "fresh_draw_files", "logprob_invalid_reason"]

LOGPROB_REASONS = ("null", "nan", "inf", "positive")


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
    response_lengths : ndarray
        Characters in the response (a two-stage calibration covariate).
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
    response_lengths: np.ndarray
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
        Characters of each response; NaN/None when the file has no responses.
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
    return keys.select(pl.struct(pl.all()).is_first_distinct().not_()).to_series().to_numpy()


def _first_bad_line(path: str, mask: np.ndarray) -> int:
    index = int(np.flatnonzero(mask)[0])
    return nonblank_line_numbers(path)[index]


def _check_unit_interval(values: np.ndarray, path: str, name: str) -> None:
    bad = np.isfinite(values) & ((values < 0) | (values > 1))
    bad |= np.isinf(values)
    if bad.any():
        line = _first_bad_line(path, bad)
        value = float(values[np.flatnonzero(bad)[0]])
        raise InputError(f"value {value:g} is outside [0, 1]", path=path, line=line, field=name)


def _scores_and_labels(frame: pl.DataFrame, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Judge scores (required) and oracle labels (NaN where absent), both checked to lie in [0, 1].

    A file in which every judge score is null is an error about the judge (a failed
    judge stage), not a later complaint about too few oracle labels.
    """
    judge = numeric_field(frame, "judge_score", path)
    if judge is None:
        raise InputError("required field is missing", path=path, line=nonblank_line_numbers(path)[0],
                         field="judge_score")
    _check_unit_interval(judge, path, "judge_score")
    if judge.size and not np.isfinite(judge).any():
        raise InputError(f"every judge_score is null ({judge.size} rows): the judge produced no scores "
                         "(check the judge stage and its log)", path=path, field="judge_score")
    oracle = numeric_field(frame, "oracle_label", path)
    if oracle is None:
        oracle = np.full(frame.height, np.nan)
    _check_unit_interval(oracle, path, "oracle_label")
    return judge, oracle


def _required_text(frame: pl.DataFrame, name: str, path: str) -> pl.Series:
    if name not in frame.columns:
        raise InputError("required field is missing", path=path, line=nonblank_line_numbers(path)[0],
                         field=name)
    series = text_field(frame.select(name), name, path)
    missing = series.is_null().to_numpy()
    if missing.any():
        raise InputError("required field is missing or null", path=path,
                         line=_first_bad_line(path, missing), field=name)
    return series


def _prompt_ids(frame: pl.DataFrame, path: str, prompts: pl.Series | None) -> np.ndarray:
    ids = text_field(frame, "prompt_id", path, allow_integer=True)
    if ids is None or ids.is_null().any():
        if prompts is None:
            raise InputError("prompt_id is missing and there is no prompt to derive it from",
                             path=path, field="prompt_id")
        hashed = pl.Series(_stable_prompt_hash(prompts.fill_null("").to_list()))
        ids = hashed if ids is None else pl.select(pl.coalesce(ids, hashed)).to_series()
    return ids.to_numpy().astype(str)


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


def _logprob_column(series: pl.Series | None, path: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (values with NaN where invalid, reason array) for one log-prob column."""
    if series is None:
        raise InputError("required log-prob field is missing", path=path,
                         line=nonblank_line_numbers(path)[0], field=name)
    values = numeric_field(None, name, path, series=series, label=name)
    reasons = logprob_invalid_reason(values)
    reasons[series.is_null().to_numpy()] = "null"
    values = np.where(reasons == "", values, np.nan)
    return values, reasons


def _check_policy_name(policy: str, path: str) -> None:
    """A ``target_policy_logprobs`` key must be a safe file-name component and not ``base``
    (:func:`cje.names.target_policy_name`): ``../../x`` would otherwise make the fresh-draws lookup
    read outside its folder, and a target ``base`` would be taken for the logged policy's row."""
    try:
        target_policy_name(policy, "policy name")
    except ConfigError:
        line = next((n for n, row in raw_rows(path) if isinstance(row, dict)
                     and isinstance(row.get("target_policy_logprobs"), dict)
                     and policy in row["target_policy_logprobs"]), None)
        target_policy_name(policy, "policy name", path=path, line=line, field="target_policy_logprobs")


def load_logged_data(path: str | Path) -> LoggedData:
    """Load and validate a logged-data JSONL file.

    Invalid log-probs (null, NaN, +-inf, > 0) are not errors: the row is dropped for the
    policies concerned and counted by reason. Rows without a judge score are dropped for
    every policy and counted.

    Parameters
    ----------
    path : str or Path
        The logged-data JSONL file.

    Returns
    -------
    LoggedData
        The validated rows, with per-policy validity masks and drop counts.

    Raises
    ------
    InputError
        Naming file, line and field: malformed JSON, missing ``prompt``/``response``/
        ``base_policy_logprob``/``target_policy_logprobs``, duplicate ``prompt_id``, judge score
        or oracle label outside [0, 1], every judge score null, a field of the wrong JSON type
        (a number given as a string or boolean, :mod:`cje.data.fields`), a policy name that
        is not a safe file-name component.
    """
    path = str(path)
    frame = read_jsonl_frame(path)
    prompts = _required_text(frame, "prompt", path)
    _required_text(frame, "response", path)
    for name in ("base_policy_logprob", "target_policy_logprobs"):
        if name not in frame.columns:
            raise InputError("required log-prob field is missing", path=path,
                             line=nonblank_line_numbers(path)[0], field=name)
    raw = Path(path).read_bytes()
    for name in ("base_policy_logprob", "target_policy_logprobs"):
        if raw.count(f'"{name}"'.encode()) < frame.height:
            present = frame.get_column(name).is_not_null().to_numpy()
            # a null value is 'invalid' (dropped); an absent key is an error: find it by text
            lines = [ln for ln in raw.split(b"\n") if ln.strip()]
            absent = np.array([f'"{name}"'.encode() not in ln for ln in lines]) & ~present
            if absent.any():
                raise InputError("required log-prob field is missing", path=path,
                                 line=_first_bad_line(path, absent), field=name)
    target_struct = frame.get_column("target_policy_logprobs")
    if not isinstance(target_struct.dtype, pl.Struct) or not target_struct.dtype.fields:
        raise InputError("must be an object {policy: log-prob} with at least one policy",
                         path=path, line=nonblank_line_numbers(path)[0], field="target_policy_logprobs")
    for policy_field in target_struct.dtype.fields:  # a policy name becomes {policy}_responses.jsonl
        _check_policy_name(policy_field.name, path)

    prompt_ids = _prompt_ids(frame, path, prompts)
    dup = _repeats(pl.DataFrame({"prompt_id": prompt_ids}))
    if dup.any():
        ids = sorted(set(prompt_ids[dup].tolist()))
        raise InputError(f"duplicate prompt_id ({len(ids)} ids repeated, e.g. {ids[:5]})",
                         path=path, line=_first_bad_line(path, dup), field="prompt_id")

    judge, oracle = _scores_and_labels(frame, path)

    base_lp, base_reason = _logprob_column(frame.get_column("base_policy_logprob"), path,
                                           "base_policy_logprob")
    has_judge = np.isfinite(judge)
    targets: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    dropped: dict[str, dict[str, int]] = {}
    for policy_field in target_struct.dtype.fields:
        policy = policy_field.name
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
    lengths = frame.get_column("response").cast(pl.String).str.len_chars().to_numpy().astype(float)
    return LoggedData(path=path, prompt_ids=prompt_ids, judge_scores=judge, oracle_labels=oracle,
                      base_logprobs=base_lp, target_logprobs=targets, valid=valid, dropped=dropped,
                      response_lengths=lengths,
                      n_rows_dropped_missing_judge=int((~has_judge).sum()))


def load_fresh_draws(path: str | Path, policy: str) -> FreshDraws:
    """Load one policy's fresh draws (``prompt_id``, ``judge_score``, ``draw_idx``, optional ``oracle_label``).

    Draws without a judge score (a failed judge call) are dropped and counted.

    Parameters
    ----------
    path : str or Path
        The policy's ``{policy}_responses.jsonl``.
    policy : str
        The target policy.

    Returns
    -------
    FreshDraws
        The draws with a judge score, and the count of those dropped.

    Raises
    ------
    InputError
        Naming file, line and field: malformed JSON, missing prompt_id, judge score or oracle
        label outside [0, 1], duplicate (prompt_id, draw_idx).
    """
    path = str(path)
    frame = read_jsonl_frame(path)
    prompts = text_field(frame.select("prompt"), "prompt", path) if "prompt" in frame.columns else None
    prompt_ids = _prompt_ids(frame, path, prompts)
    judge, oracle = _scores_and_labels(frame, path)
    draw_idx = integer_field(frame, "draw_idx", path, minimum=0)
    if draw_idx is None:
        draw_idx = np.zeros(frame.height, dtype=np.int64)
    dup = _repeats(pl.DataFrame({"p": prompt_ids, "d": draw_idx}))
    if dup.any():
        raise InputError("duplicate (prompt_id, draw_idx)", path=path, line=_first_bad_line(path, dup),
                         field="draw_idx")
    keep = np.isfinite(judge)
    response = text_field(frame.select("response"), "response", path) if "response" in frame.columns else None
    lengths = (response.str.len_chars().fill_null(0).to_numpy().astype(float)
               if response is not None else np.full(frame.height, np.nan))
    return FreshDraws(policy=policy, path=path, prompt_ids=prompt_ids[keep], judge_scores=judge[keep],
                      oracle_labels=oracle[keep], draw_idx=draw_idx[keep],
                      n_dropped_missing_judge=int((~keep).sum()), response_lengths=lengths[keep])


def fresh_draw_files(directory: str | Path, policies: list[str]) -> tuple[dict[str, Path], list[str]]:
    """``({policy: directory/{policy}_responses.jsonl}, [policies without that file])``.

    Each policy name is checked with :func:`cje.names.target_policy_name` before it
    becomes a path.

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
        ``directory`` is missing, is a file, a dangling symlink or a symlink loop.
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
        file = directory / f"{target_policy_name(policy, 'policy name')}_responses.jsonl"
        if os.path.lexists(file):
            found[policy] = file
        else:
            missing.append(policy)
    return found, missing


def load_fresh_draws_dir(directory: str | Path, policies: list[str]) -> dict[str, FreshDraws]:
    """Load ``{directory}/{policy}_responses.jsonl`` for each policy that has one.

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
    return {policy: load_fresh_draws(file, policy) for policy, file in found.items()}
