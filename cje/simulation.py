"""A data-generating process with known truth, for Monte-Carlo tests and benchmarks.

Each prompt has a difficulty d ~ N(0, 1). A policy with shift mu draws a
response "quality" a | d ~ N(mu - 0.3 d, 1), so its teacher-forced log-prob is
the normal log-density (always <= -0.919) and the importance ratio between two
policies is exact. The judge sees the response through noise,
S = sigmoid(a + e_S), e_S ~ N(0, 0.7^2). The oracle label Y in [0, 1] is:

* ``surrogacy=True`` (judge sufficient): Y = 0.15 + 0.7 S + e_Y,
  e_Y ~ Uniform(-0.15, 0.15), so Y stays in [0, 1] without clipping. E[Y | S] is
  the same under every policy, so a calibration learned on base rows transports.
  (Clipped Gaussian noise bends E[Y | S] flat against 0, and isotonic regression's
  boundary bias then shows up as about -0.002 for policies shifted toward low
  scores; bounded noise keeps the DGP's regression function exactly linear.)
* ``surrogacy=False`` (judge not sufficient): Y = clip(sigmoid(1.2 a) + e_Y, 0, 1).
  E[Y | S] then depends on the policy's distribution of a, and calibrating on
  base rows shrinks every target toward the base (statistics.md 7b).

The truth V(pi) = E_pi[Y] is computed by a 2,000,000-draw Monte Carlo at a fixed
seed (error ~2e-4, far below the tolerances of the tests that use it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cje.data import FreshDraws, LoggedData
from cje.io import write_jsonl

__all__ = ["DEFAULT_POLICIES", "SimulatedDataset", "simulate", "true_value"]

DEFAULT_POLICIES = {"base": 0.0, "similar": 0.1, "better": 0.25, "worse": -0.2}
_LOG_NORM = -0.5 * np.log(2 * np.pi)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _draw(rng: np.random.Generator, difficulty: np.ndarray, shift: float, surrogacy: bool):
    mean = shift - 0.3 * difficulty
    quality = mean + rng.standard_normal(difficulty.size)
    judge = _sigmoid(quality + 0.7 * rng.standard_normal(difficulty.size))
    if surrogacy:
        oracle = 0.15 + 0.7 * judge + 0.15 * rng.uniform(-1.0, 1.0, difficulty.size)
    else:
        oracle = _sigmoid(1.2 * quality) + 0.05 * rng.standard_normal(difficulty.size)
    return quality, judge, np.clip(oracle, 0.0, 1.0)


def _logpdf(quality: np.ndarray, difficulty: np.ndarray, shift: float) -> np.ndarray:
    z = quality - (shift - 0.3 * difficulty)
    return _LOG_NORM - 0.5 * z ** 2


@lru_cache(maxsize=64)
def true_value(shift: float, surrogacy: bool = True, n: int = 2_000_000) -> float:
    """V(pi) = E_pi[Y] for the policy with this shift, by a fixed-seed Monte Carlo."""
    rng = np.random.default_rng(20_261_127)
    difficulty = rng.standard_normal(n)
    return float(_draw(rng, difficulty, shift, surrogacy)[2].mean())


@dataclass
class SimulatedDataset:
    """Logged data, fresh draws and the true value of each target policy."""

    logged: LoggedData
    fresh: dict[str, FreshDraws]
    truth: dict[str, float]

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``logged_data.jsonl`` and ``fresh_draws/{policy}_responses.jsonl`` (pipeline layout)."""
        directory = Path(directory)
        d = self.logged
        rows = [{"prompt_id": pid, "prompt": f"prompt {pid}", "response": "x" * int(length),
                 "base_policy_logprob": float(b),
                 "target_policy_logprobs": {p: float(d.target_logprobs[p][i]) for p in d.target_policies},
                 "metadata": {"judge_score": float(s), "oracle_label": None if not np.isfinite(y) else float(y)}}
                for i, (pid, length, b, s, y) in enumerate(zip(d.prompt_ids, d.response_lengths, d.base_logprobs,
                                                                d.judge_scores, d.oracle_labels))]
        logged_path = directory / "logged_data.jsonl"
        write_jsonl(logged_path, rows)
        fresh_dir = directory / "fresh_draws"
        for policy, f in self.fresh.items():
            write_jsonl(fresh_dir / f"{policy}_responses.jsonl",
                        [{"prompt_id": pid, "response": "y", "draw_idx": int(k), "judge_score": float(s),
                          "oracle_label": None if not np.isfinite(y) else float(y)}
                         for pid, k, s, y in zip(f.prompt_ids, f.draw_idx, f.judge_scores, f.oracle_labels)])
        return logged_path, fresh_dir


def simulate(n: int, seed: int, policies: dict[str, float] | None = None, surrogacy: bool = True,
             draws_per_prompt: int = 1, fresh_oracle: bool = True,
             outcome_noise_shift: float = 0.0) -> SimulatedDataset:
    """Draw one logged dataset of ``n`` prompts under ``policies['base']`` plus fresh draws.

    Parameters
    ----------
    n : number of logged prompts (one base response each).
    seed : numpy Generator seed; the same seed gives the same data.
    policies : {name: shift}; must contain 'base'. Default :data:`DEFAULT_POLICIES`.
    surrogacy : whether the judge is sufficient for the oracle (see module doc).
    draws_per_prompt : fresh draws per prompt and target policy.
    fresh_oracle : whether fresh draws carry oracle labels (ground truth).

    Returns a :class:`SimulatedDataset`; every logged row has an oracle label
    (coverage experiments mask them).
    """
    policies = dict(policies or DEFAULT_POLICIES)
    base_shift = policies.pop("base")
    rng = np.random.default_rng(seed)
    difficulty = rng.standard_normal(n)
    quality, judge, oracle = _draw(rng, difficulty, base_shift, surrogacy)
    ids = np.char.add("sim_", np.arange(n).astype(str))
    targets = {p: _logpdf(quality, difficulty, shift) for p, shift in policies.items()}
    logged = LoggedData(path="<simulated>", prompt_ids=ids, judge_scores=judge, oracle_labels=oracle,
                        base_logprobs=_logpdf(quality, difficulty, base_shift), target_logprobs=targets,
                        valid={p: np.ones(n, bool) for p in policies}, dropped={p: {} for p in policies},
                        response_lengths=np.round(200 + 50 * quality).clip(1))
    fresh = {}
    for policy, shift in policies.items():
        reps = np.repeat(difficulty, draws_per_prompt)
        _, f_judge, f_oracle = _draw(rng, reps, shift, surrogacy)
        fresh[policy] = FreshDraws(policy=policy, path="<simulated>", prompt_ids=np.repeat(ids, draws_per_prompt),
                                   judge_scores=f_judge,
                                   oracle_labels=f_oracle if fresh_oracle else np.full(reps.size, np.nan),
                                   draw_idx=np.tile(np.arange(draws_per_prompt), n))
    truth = {p: true_value(float(shift), surrogacy) for p, shift in policies.items()}
    return SimulatedDataset(logged=logged, fresh=fresh, truth=truth)
