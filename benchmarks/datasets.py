"""Benchmark inputs: resampled copies of the arena sample and synthetic scale data.

Both generators are seeded and vectorised with polars/numpy (no per-row Python),
write JSONL in the same layout as the real data (so the timed CLI pays for
loading), and leave a ``manifest.json`` next to the files with the recipe and a
content digest. A dataset is regenerated only when its manifest is missing or its
recipe changed. Everything lands under ``benchmarks/results/tmp/`` (git-ignored).

Layout of one dataset directory::

    DIR/logged_data.jsonl
    DIR/fresh_draws/{policy}_responses.jsonl
    DIR/manifest.json      # recipe, n, n_oracle, input_digest
    DIR/parquet/           # parquet_copy(): the same files as Parquet (same fields, same rows)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cje.atomic import atomic_writer

from .common import ARENA_DIR, TMP_DIR, file_digest, log, read_json, write_json

#: Bump when the generated content changes, so old manifests are not reused for
#: different inputs (saved reference results are keyed by the content digest anyway).
ARENA_RECIPE_VERSION = 1
SYNTH_RECIPE_VERSION = 2
#: Share of logged rows that keep an oracle label in the resampled/synthetic copies.
ORACLE_SHARE = 0.10


@dataclass(frozen=True)
class BenchDataset:
    """One benchmark input: logged JSONL, fresh-draw directory, size and digest.

    n: logged rows; n_oracle: logged rows with an oracle label; target_policies:
    policy names in the logged rows' ``target_policy_logprobs``; input_digest: what
    identifies the input (the key of saved reference results): for the arena sample
    the blake2b of its files (``common.file_digest``), for generated data the blake2b
    of its recipe (which includes the source files' digest), so a new polars that
    formats floats differently does not invalidate saved reference cells. The
    content digest of generated files is kept in their manifest.
    """

    name: str
    logged: Path
    fresh_draws_dir: Path
    n: int
    n_oracle: int
    target_policies: tuple[str, ...]
    input_digest: str


def _fresh_files(fresh_dir: Path) -> list[Path]:
    return sorted(Path(fresh_dir).glob("*_responses.jsonl"))


def _from_manifest(name: str, directory: Path, recipe: dict) -> BenchDataset | None:
    man = read_json(directory / "manifest.json")
    if not man or man.get("recipe") != recipe:
        return None
    if not (directory / "logged_data.jsonl").exists():
        return None
    return BenchDataset(name, directory / "logged_data.jsonl", directory / "fresh_draws",
                        man["n"], man["n_oracle"], tuple(man["target_policies"]),
                        recipe_digest(recipe))


def _finish(name: str, directory: Path, recipe: dict, n: int, n_oracle: int,
            policies: list[str]) -> BenchDataset:
    logged = directory / "logged_data.jsonl"
    content = file_digest([logged, *_fresh_files(directory / "fresh_draws")])
    write_json(directory / "manifest.json", {
        "recipe": recipe, "n": n, "n_oracle": n_oracle, "target_policies": policies,
        "input_digest": recipe_digest(recipe), "content_digest": content})
    return BenchDataset(name, logged, directory / "fresh_draws", n, n_oracle,
                        tuple(policies), recipe_digest(recipe))


def recipe_digest(recipe: dict) -> str:
    """blake2b-128 hex digest of a dataset recipe (canonical JSON)."""
    return hashlib.blake2b(json.dumps(recipe, sort_keys=True).encode(), digest_size=16).hexdigest()


def arena_sample() -> BenchDataset:
    """The arena sample itself (n=1,000, 480 oracle labels), read in place by path.

    Output: a ``BenchDataset`` pointing at ``ARENA_DIR``; raises FileNotFoundError
    naming the path when the sample is not there.
    """
    logged = ARENA_DIR / "logged_data.jsonl"
    if not logged.exists():
        raise FileNotFoundError(f"{logged}: arena sample not found (set CJE_ARENA_SAMPLE)")
    df = pl.read_ndjson(logged)
    policies = list(df.schema["target_policy_logprobs"].to_schema().keys())
    n_oracle = int(df["oracle_label"].is_not_null().sum())
    digest = file_digest([logged, *_fresh_files(ARENA_DIR / "fresh_draws")])
    return BenchDataset("arena", logged, ARENA_DIR / "fresh_draws", df.height, n_oracle,
                        tuple(policies), digest)


def arena_resampled(n: int, seed: int = 20251127, root: Path = TMP_DIR) -> BenchDataset:
    """A seeded resampled copy of the arena sample with ``n`` logged rows.

    Prompts are drawn with replacement; copy i gets the new unique id
    ``bench{n}_{i:07d}`` (in ``metadata.prompt_id``) and its source prompt's fresh
    draws are copied under that id for every policy file. Oracle labels are kept on
    a seeded uniform subset of round(ORACLE_SHARE * n) of the copies whose source
    row is labelled (all of them if fewer); the rest become null. Output: the
    ``BenchDataset`` under ``root/arena_n{n}`` (root defaults to ``TMP_DIR``).
    """
    recipe = {"kind": "arena_resampled", "n": n, "seed": seed, "oracle_share": ORACLE_SHARE,
              "version": ARENA_RECIPE_VERSION, "source_digest": arena_sample().input_digest}
    directory = Path(root) / f"arena_n{n}"
    cached = _from_manifest(f"arena_n{n}", directory, recipe)
    if cached:
        return cached
    log(f"writing resampled arena copy n={n} to {directory}")
    rng = np.random.default_rng(seed)
    src = pl.read_ndjson(ARENA_DIR / "logged_data.jsonl")
    src_ids = src["metadata"].struct.field("prompt_id")
    pick = rng.integers(0, src.height, size=n)
    new_ids = (f"bench{n}_" + pl.int_range(0, n, eager=True).cast(pl.Utf8).str.zfill(7)).alias("new_id")
    logged = src[pick].with_columns(
        new_ids, pl.Series("orig_id", src_ids.gather(pick)))
    labelled = np.flatnonzero(logged["oracle_label"].is_not_null().to_numpy())
    n_keep = min(len(labelled), int(round(ORACLE_SHARE * n)))
    keep = np.zeros(n, dtype=bool)
    keep[rng.choice(labelled, size=n_keep, replace=False)] = True
    logged = logged.with_columns(
        pl.when(pl.Series(keep)).then(pl.col("oracle_label")).otherwise(None).alias("oracle_label"),
        pl.struct(pl.col("new_id").alias("prompt_id")).alias("metadata"))
    id_map = logged.select("new_id", "orig_id")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fresh_draws").mkdir(exist_ok=True)
    logged.select(src.columns).write_ndjson(directory / "logged_data.jsonl")
    for f in _fresh_files(ARENA_DIR / "fresh_draws"):
        fresh = pl.read_ndjson(f)
        copied = (id_map.join(fresh, left_on="orig_id", right_on="prompt_id", how="inner",
                              maintain_order="left")
                  .rename({"new_id": "prompt_id"}).select(fresh.columns))
        copied.write_ndjson(directory / "fresh_draws" / f.name)
    policies = list(src.schema["target_policy_logprobs"].to_schema().keys())
    return _finish(f"arena_n{n}", directory, recipe, n, n_keep, policies)


SYNTH_POLICIES = ("clone", "shifted", "worse")


def synthetic(n: int, seed: int = 7, root: Path = TMP_DIR) -> BenchDataset:
    """Synthetic logged data with ``n`` rows, 3 target policies, one fresh draw each.

    Shape follows the arena sample: judge scores on a 0.05 grid that saturate near
    0.85, oracle labels = clip(judge + noise) on ORACLE_SHARE of the rows, base
    log-probs around -40, target log-probs = base + a policy shift + noise + a tilt
    toward the policy's quality (clone: 0 +- 0.7; shifted: -1 +- 1, tilt +2;
    worse: -3 +- 2, tilt -4), capped at 0; fresh-draw quality is shifted to match
    (clone 0, shifted +0.05, worse -0.3). The data exist for timing, not accuracy. Texts are short
    (prompts ~40, responses ~120 characters) so 10^6 rows stay a few hundred MB;
    real responses are ~1.5 kB, so this understates JSON parsing cost by ~10x.
    Output: the ``BenchDataset`` under ``root/synthetic_n{n}`` (root defaults to ``TMP_DIR``).
    """
    recipe = {"kind": "synthetic", "n": n, "seed": seed, "oracle_share": ORACLE_SHARE,
              "version": SYNTH_RECIPE_VERSION, "policies": list(SYNTH_POLICIES)}
    directory = Path(root) / f"synthetic_n{n}"
    cached = _from_manifest(f"synthetic_n{n}", directory, recipe)
    if cached:
        return cached
    log(f"writing synthetic data n={n} to {directory}")
    rng = np.random.default_rng(seed)
    idx = pl.int_range(0, n, eager=True).cast(pl.Utf8)
    prompt_id = ("syn_" + idx.str.zfill(7)).alias("prompt_id")
    prompt = ("Synthetic benchmark prompt number " + idx).alias("prompt")
    filler = " lorem ipsum dolor sit amet, consectetur adipiscing elit" * 2

    def judge_oracle(quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.clip(np.round((quality + rng.normal(0, 0.15, quality.size)) * 20) / 20, 0, 1)
        s = np.where(rng.random(quality.size) < 0.5, np.minimum(s, 0.85), s)  # saturation
        y = np.clip(quality + rng.normal(0, 0.1, quality.size), 0, 1)
        return s, np.round(y, 3)

    def oracle_mask(y: np.ndarray) -> pl.Series:
        keep = np.zeros(y.size, dtype=bool)
        keep[rng.choice(y.size, size=int(round(ORACLE_SHARE * y.size)), replace=False)] = True
        return pl.Series("oracle_label", np.where(keep, y, np.nan)).fill_nan(None)

    quality = rng.beta(5, 2, n)
    s, y = judge_oracle(quality)
    lp_base = -np.abs(rng.normal(40, 15, n)) - 1
    shifts = {"clone": (0.0, 0.7, 0.0), "shifted": (-1.0, 1.0, 2.0), "worse": (-3.0, 2.0, -4.0)}
    lp_t = {p: np.minimum(lp_base + rng.normal(m, sd, n) + tilt * (quality - 0.7), -1e-3)
            for p, (m, sd, tilt) in shifts.items()}
    response = (pl.lit("Response ") + idx + pl.lit(filler)).alias("response")
    logged = pl.DataFrame({"prompt_id": prompt_id}).with_columns(
        prompt, pl.select(response).to_series(),
        pl.Series("base_policy_logprob", lp_base),
        pl.struct([pl.Series(p, v) for p, v in lp_t.items()]).alias("target_policy_logprobs"),
        pl.Series("judge_score", s), oracle_mask(y))
    logged = logged.with_columns(pl.struct("prompt_id").alias("metadata")).select(
        "prompt", "response", "base_policy_logprob", "target_policy_logprobs", "metadata",
        "judge_score", "oracle_label")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fresh_draws").mkdir(exist_ok=True)
    logged.write_ndjson(directory / "logged_data.jsonl")
    quality_shift = {"clone": 0.0, "shifted": 0.05, "worse": -0.3}
    for p in SYNTH_POLICIES:
        sf, yf = judge_oracle(np.clip(quality + quality_shift[p], 0, 1))
        fresh = pl.DataFrame({"prompt_id": prompt_id}).with_columns(
            prompt, pl.select((pl.lit(f"Fresh {p} ") + idx + pl.lit(filler))).to_series().alias("response"),
            pl.Series("judge_score", sf), oracle_mask(yf), pl.lit(0, pl.Int64).alias("draw_idx"))
        fresh.write_ndjson(directory / "fresh_draws" / f"{p}_responses.jsonl")
    n_oracle = int(round(ORACLE_SHARE * n))
    return _finish(f"synthetic_n{n}", directory, recipe, n, n_oracle, list(SYNTH_POLICIES))


def parquet_copy(ds: BenchDataset) -> BenchDataset:
    """The same dataset as Parquet (``cje analyze`` recognises it by its first bytes).

    Each file is read by cje's strict JSONL reader and written as Parquet through the
    one atomic writer, so the columns and types are those an analysis of the JSONL
    sees; the estimates are bit-identical (tests/core/test_parquet_inputs.py). Written
    once, beside the JSONL under ``DIR/parquet/`` (the arena sample: under ``TMP_DIR``).
    Output: a ``BenchDataset`` named ``{name}-parquet`` with the same ``input_digest``.
    """
    from cje.data.jsonl import read_jsonl_frame

    root = (TMP_DIR / "arena_parquet") if ds.name == "arena" else ds.logged.parent / "parquet"
    logged = root / "logged_data.parquet"
    fresh_dir = root / "fresh_draws"
    pairs = [(ds.logged, logged)] + [(f, fresh_dir / f"{f.stem}.parquet") for f in _fresh_files(ds.fresh_draws_dir)]
    for src, dst in pairs:
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            with atomic_writer(dst) as fh:  # the one atomic writer (cje.atomic)
                read_jsonl_frame(src).write_parquet(fh)
    return BenchDataset(f"{ds.name}-parquet", logged, fresh_dir, ds.n, ds.n_oracle, ds.target_policies,
                        ds.input_digest)


def masked_copy(ds: BenchDataset, oracle_coverage: float, seed: int) -> Path:
    """Copy of ``ds.logged`` keeping oracle labels on round(oracle_coverage * n) rows.

    Used for tools without an oracle-coverage option (the reference library). The
    kept rows are a seeded uniform subset of the labelled rows (all of them when
    fewer are labelled). Output: path of the copy under ``TMP_DIR/masked``.
    """
    out = TMP_DIR / "masked" / f"{ds.name}-c{oracle_coverage:g}-s{seed}-{ds.input_digest[:8]}.jsonl"
    if out.exists():
        return out
    df = pl.read_ndjson(ds.logged)
    labelled = np.flatnonzero(df["oracle_label"].is_not_null().to_numpy())
    n_keep = min(len(labelled), int(round(oracle_coverage * df.height)))
    keep = np.zeros(df.height, dtype=bool)
    keep[np.random.default_rng(seed).choice(labelled, size=n_keep, replace=False)] = True
    with atomic_writer(out) as fh:  # the one atomic writer (cje.atomic)
        df.with_columns(pl.when(pl.Series(keep)).then(pl.col("oracle_label")).otherwise(None)
                        .alias("oracle_label")).write_ndjson(fh)
    return out
