"""The one cross-fitting fold map (statistics.md section 2).

fold(prompt_id) = stable_hash(f"{prompt_id}-{seed}-{K}") mod K, where the hash is
64-bit FNV-1a over the UTF-8 bytes, computed column-wise with numpy so that a
million ids take well under a second. Labelled rows are then re-balanced
round-robin in hash order so that no fold is left without oracle labels when
there are at least 2K of them. Calibration, outcome models, weight calibration,
the OUA jackknife and fresh draws (through their prompt_id) all use this map.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stable_hash", "assign_folds", "fold_of_prompts"]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def stable_hash(keys: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a hash of each string in ``keys`` (uint64 array, same length).

    Stable across processes, platforms and library versions (unlike Python's
    ``hash`` or polars' hash). Vectorised: one numpy pass per byte position. A final
    splitmix64 avalanche makes ``mod K`` use all bits.

    Parameters
    ----------
    keys : array-like of str
        The strings to hash (UTF-8 encoded).

    Returns
    -------
    ndarray of uint64
        One hash per key.
    """
    encoded = np.char.encode(np.asarray(keys, dtype=str), "utf-8")
    width = encoded.dtype.itemsize
    n = encoded.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    as_bytes = np.frombuffer(encoded.tobytes(), dtype=np.uint8).reshape(n, width)
    lengths = np.char.str_len(encoded)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            active = lengths > j
            mixed = (h ^ as_bytes[:, j].astype(np.uint64)) * _FNV_PRIME
            h = np.where(active, mixed, h)
        # final avalanche (splitmix64) so that mod K uses all bits
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def assign_folds(prompt_ids: np.ndarray, n_folds: int = 5, seed: int = 0,
                 labelled: np.ndarray | None = None) -> np.ndarray:
    """Fold index in ``0..n_folds-1`` for each logged row.

    Parameters
    ----------
    prompt_ids : array-like of str
        One per logged row.
    n_folds : int, default=5
        K.
    seed : int, default=0
        Changes the map; the same (ids, K, seed) always give the same folds.
    labelled : ndarray of bool or None, default=None
        Rows with an oracle label; when there are
        at least ``2 * n_folds`` of them they are dealt round-robin in hash order,
        so every fold gets ``floor`` or ``ceil`` of ``n_labelled / K`` labels.

    Returns
    -------
    ndarray of int64
        Fold ids.
    """
    ids = np.asarray(prompt_ids, dtype=str)
    keys = np.char.add(np.char.add(ids, f"-{seed}-"), str(n_folds))
    h = stable_hash(keys)
    folds = (h % np.uint64(n_folds)).astype(np.int64)
    if labelled is not None and labelled.sum() >= 2 * n_folds:
        idx = np.flatnonzero(labelled)
        order = idx[np.argsort(h[idx], kind="stable")]
        folds[order] = np.arange(order.size) % n_folds
    return folds


def fold_of_prompts(query_ids: np.ndarray, logged_ids: np.ndarray, logged_folds: np.ndarray,
                    n_folds: int, seed: int) -> np.ndarray:
    """Fold of each query prompt id: the logged row's fold when the prompt was logged, else the hash fold.

    Vectorised with a sorted search (no per-id Python lookups).

    Parameters
    ----------
    query_ids : array-like of str
        Prompt ids to look up (e.g. of fresh draws).
    logged_ids : array-like of str
        The logged prompt ids.
    logged_folds : ndarray of int
        Their folds (:func:`assign_folds`).
    n_folds : int
        K.
    seed : int
        The seed of the map.

    Returns
    -------
    ndarray of int64
        One fold per query id.
    """
    query = np.asarray(query_ids, dtype=str)
    order = np.argsort(logged_ids, kind="stable")
    sorted_ids = np.asarray(logged_ids, dtype=str)[order]
    pos = np.searchsorted(sorted_ids, query)
    pos_clipped = np.minimum(pos, max(sorted_ids.size - 1, 0))
    found = (sorted_ids.size > 0) & (sorted_ids[pos_clipped] == query) if sorted_ids.size else np.zeros(query.size, bool)
    out = assign_folds(query, n_folds, seed)
    if sorted_ids.size:
        out[found] = logged_folds[order[pos_clipped[found]]]
    return out
