"""Data-generating processes with known truth, for Monte-Carlo tests and benchmarks.

One family of processes, parameterised by a :class:`Scenario`. Each prompt has a
difficulty d ~ N(0, 1). A policy (:class:`PolicySpec`) draws a response with a
latent quality a | d ~ N(shift - 0.3 d, 1) and, independently, a "gaming" flag
G ~ Bernoulli(gaming_rate) (a response written to please the judge). The
teacher-forced log-prob of the response is the exact log-density of (a, G)
under the policy, log N(a; shift - 0.3 d, 1) + log Bernoulli(G; gaming_rate), so
the importance ratio between two policies is known; ``logprob_noise`` adds
independent N(0, tau^2) noise to every reported log-prob (a jittery provider).

The judge sees the response through noise, S = sigmoid(a + judge_noise e +
gaming_boost G), e ~ N(0, 1), rounded to ``judge_levels`` evenly spaced values
when set (a 0-10 judge, say). The oracle label has conditional mean

    mu(S, G) = link(S) - gaming_penalty * G,

with ``link`` the regression of the oracle on the judge: ``linear`` (0.15 + 0.7 S)
or ``nonlinear`` (an S-curve, 0.1 + 0.8 (sigmoid(6 (S - 0.5)) - c0) / (c1 - c0)).
Labels are ``continuous`` (mu + Uniform(-0.15, 0.15), clipped to [0, 1]) or
``binary`` (Bernoulli(clip(mu, 0, 1)))).

* Without gaming, E[Y | S] = link(S) under every policy: the judge is a sufficient
  surrogate and a calibration learned on base rows transports (statistics.md 7b).
* A policy whose gaming rate differs from the base's breaks surrogacy: at a given
  judge score its responses are worse than the base's, so every estimate built on
  R = f(S) is biased upward for it. When the base also games (rate > 0), the
  logged rows contain such responses and the importance weights see them, so an
  estimator that uses the oracle labels with the full weight (tr-cpo's label term)
  can correct the bias; when the base never games, only probe labels on the
  target's fresh draws can.
* ``surrogacy=False`` in :func:`simulate` keeps the older judge-not-sufficient
  model, Y = clip(sigmoid(1.2 a) + N(0, 0.05^2), 0, 1): E[Y | S] then depends on
  the policy's distribution of a.

The truth V(pi) = E_pi[Y] is the mean of the exact conditional mean E[Y | S, G]
(clipping included) over 4,000,000 draws at a fixed seed: Monte-Carlo error
about 1e-4, far below the tolerances of the tests that use it.

Named scenarios (:data:`SCENARIOS`): ``mild`` (shifts of at most 0.25, raw-weight
ESS 0.94-0.99), ``strong`` (a target at shift 1.0 with noisy log-probs: raw ESS
about 0.3, Hill index below 3), ``gaming`` (a target that games the judge on half
its responses where the base does on 10%), ``gaming-unseen`` (the base never
games, so no weight can see it), ``judge-blind-unseen`` and ``judge-blind-rare`` (below).
All use a nonlinear link and an 11-level judge.

Judge-blind defects: independently of (a, G), a policy's response has a defect
D ~ Bernoulli(defect_rate) that the judge cannot see (S does not depend on D) and
that lowers the oracle mean by ``defect_penalty``: mu(S, G, D) = link(S) -
gaming_penalty G - defect_penalty D. The log-prob gains log Bernoulli(D;
defect_rate) (only for a policy with defect_rate > 0, and D is drawn only then,
so processes without defects keep their random stream bit for bit). D is
independent of S, so E[Y | S] = (1 - r) E[Y | S, D = 0] + r E[Y | S, D = 1] for a
policy with defect rate r: the base's calibration transports to a target with
the base's rate and is biased by about defect_penalty * (target rate - base rate)
(less where the label clipping binds) for any other. In
``judge-blind-unseen`` the base has no defects: the target puts mass q =
defect_rate on responses the base never writes, no logged row shows them, and
the unnormalised ratios exp(lp_t - lp_b) over logged rows have mean 1 - q (the
Hajek normalisation hides it; :func:`cje.stats.diagnostics.support_mass` measures it).
In ``judge-blind-rare`` the base writes them at a small rate, so the weights see
them (heavily: ratio q / base rate on those rows) and the label term of tr-cpo
can correct the bias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from cje.data.jsonl import write_jsonl
from cje.data.loaders import FreshDraws, LoggedData

__all__ = ["DEFAULT_POLICIES", "PolicySpec", "Scenario", "SCENARIOS", "SimulatedDataset", "simulate",
           "simulate_scenario", "true_value", "scenario_truth"]

DEFAULT_POLICIES = {"base": 0.0, "similar": 0.1, "better": 0.25, "worse": -0.2}
_LOG_NORM = -0.5 * np.log(2 * np.pi)
_TRUTH_DRAWS = 4_000_000
_TRUTH_SEED = 20_261_127
CONTINUOUS_NOISE = 0.15


@dataclass(frozen=True)
class PolicySpec:
    """How one policy writes responses: quality shift, the share of judge-gaming responses and the
    share of responses with a defect the judge cannot see (``defect_rate``)."""

    shift: float = 0.0
    gaming_rate: float = 0.0
    defect_rate: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A data-generating process (see the module docstring for the formulas).

    policies : {name: PolicySpec}; must contain ``base`` (the logging policy).
    link : 'linear' or 'nonlinear' regression of the oracle on the judge.
    judge_levels : None (continuous judge) or the number of evenly spaced judge values.
    judge_noise : sd of the judge's noise on the logit scale.
    logprob_noise : sd of the independent noise on every reported log-prob.
    gaming_boost : logit-scale inflation of a gaming response's judge score.
    gaming_penalty : how much lower a gaming response's oracle mean is.
    labels : 'continuous' or 'binary' oracle labels.
    defect_penalty : how much lower the oracle mean of a response with a judge-blind defect is
        (the judge score does not depend on the defect).
    """

    name: str
    policies: Mapping[str, PolicySpec]
    link: str = "nonlinear"
    judge_levels: int | None = 11
    judge_noise: float = 0.7
    logprob_noise: float = 0.0
    gaming_boost: float = 2.0
    gaming_penalty: float = 0.3
    labels: str = "continuous"
    defect_penalty: float = 0.25
    description: str = field(default="", compare=False)

    def __post_init__(self):
        if "base" not in self.policies:
            raise ValueError("a scenario needs a 'base' policy")
        if self.link not in ("linear", "nonlinear"):
            raise ValueError(f"unknown link {self.link!r}")
        if self.labels not in ("continuous", "binary"):
            raise ValueError(f"unknown label kind {self.labels!r}")
        base = self.policies["base"]
        for name, spec in self.policies.items():
            for rate in ("gaming_rate", "defect_rate"):
                if not 0.0 <= getattr(spec, rate) < 1.0:
                    raise ValueError(f"policy {name!r}: {rate} must be in [0, 1)")
                if getattr(base, rate) > 0 and getattr(spec, rate) == 0:
                    # a logged response with the trait would have log-prob -inf under this target
                    raise ValueError(f"policy {name!r}: {rate} 0 while the base's is > 0; use a rate > 0")

    @property
    def targets(self) -> list[str]:
        return [p for p in self.policies if p != "base"]


def _nonlinear(s):
    lo, hi = 1 / (1 + np.exp(3.0)), 1 / (1 + np.exp(-3.0))
    return 0.1 + 0.8 * (1 / (1 + np.exp(-6.0 * (s - 0.5))) - lo) / (hi - lo)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _clipped_uniform_mean(mean: np.ndarray, half_width: float) -> np.ndarray:
    """E[clip(mean + U, 0, 1)], U ~ Uniform(-h, h): exact, via the antiderivative of clip."""
    def antiderivative(x):
        return np.where(x < 0, 0.0, np.where(x > 1, 0.5 + (x - 1), 0.5 * x * x))

    return (antiderivative(mean + half_width) - antiderivative(mean - half_width)) / (2 * half_width)


@dataclass
class _Draw:
    quality: np.ndarray
    gaming: np.ndarray
    defect: np.ndarray
    judge: np.ndarray
    oracle: np.ndarray
    oracle_mean: np.ndarray


def _draw(rng: np.random.Generator, difficulty: np.ndarray, spec: PolicySpec, sc: Scenario,
          with_labels: bool = True) -> _Draw:
    n = difficulty.size
    quality = spec.shift - 0.3 * difficulty + rng.standard_normal(n)
    gaming = rng.random(n) < spec.gaming_rate if spec.gaming_rate > 0 else np.zeros(n, bool)
    # drawn only when the policy has defects, so processes without them keep their random stream
    defect = rng.random(n) < spec.defect_rate if spec.defect_rate > 0 else np.zeros(n, bool)
    judge = _sigmoid(quality + sc.judge_noise * rng.standard_normal(n) + sc.gaming_boost * gaming)
    if sc.judge_levels:
        judge = np.round(judge * (sc.judge_levels - 1)) / (sc.judge_levels - 1)
    link = _nonlinear(judge) if sc.link == "nonlinear" else 0.15 + 0.7 * judge
    mu = link - sc.gaming_penalty * gaming
    if spec.defect_rate > 0:  # the judge never sees the defect; only the oracle does
        mu = mu - sc.defect_penalty * defect
    if sc.labels == "binary":
        mean = np.clip(mu, 0.0, 1.0)
        oracle = (rng.random(n) < mean).astype(float) if with_labels else mean
    else:
        mean = _clipped_uniform_mean(mu, CONTINUOUS_NOISE)
        oracle = (np.clip(mu + CONTINUOUS_NOISE * rng.uniform(-1.0, 1.0, n), 0.0, 1.0)
                  if with_labels else mean)
    return _Draw(quality, gaming, defect, judge, oracle, mean)


def _logprob(draw: _Draw, difficulty: np.ndarray, spec: PolicySpec) -> np.ndarray:
    z = draw.quality - (spec.shift - 0.3 * difficulty)
    lp = _LOG_NORM - 0.5 * z ** 2
    if spec.gaming_rate > 0:
        lp = lp + np.where(draw.gaming, np.log(spec.gaming_rate), np.log1p(-spec.gaming_rate))
    if spec.defect_rate > 0:
        lp = lp + np.where(draw.defect, np.log(spec.defect_rate), np.log1p(-spec.defect_rate))
    return lp


@lru_cache(maxsize=256)
def _scenario_truth(spec: PolicySpec, link: str, judge_levels: int | None, judge_noise: float,
                    gaming_boost: float, gaming_penalty: float, labels: str, defect_penalty: float) -> float:
    sc = Scenario("truth", {"base": spec}, link=link, judge_levels=judge_levels, judge_noise=judge_noise,
                  gaming_boost=gaming_boost, gaming_penalty=gaming_penalty, labels=labels,
                  defect_penalty=defect_penalty)
    rng = np.random.default_rng(_TRUTH_SEED)
    total, done, chunk = 0.0, 0, 1_000_000
    while done < _TRUTH_DRAWS:  # chunks keep memory flat
        d = rng.standard_normal(chunk)
        total += float(_draw(rng, d, spec, sc, with_labels=False).oracle_mean.sum())
        done += chunk
    return total / done


def scenario_truth(scenario: Scenario, policy: str) -> float:
    """V(pi) = E_pi[Y] for ``policy`` of ``scenario`` (fixed-seed Monte Carlo of E[Y | S, G]).

    Depends only on the policy and the judge/oracle model (not on log-prob noise), and is cached.
    """
    sc = scenario
    return _scenario_truth(sc.policies[policy], sc.link, sc.judge_levels, sc.judge_noise, sc.gaming_boost,
                           sc.gaming_penalty, sc.labels, sc.defect_penalty)


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


def simulate_scenario(scenario: Scenario | str, n: int, seed: int, draws_per_prompt: int = 1,
                      fresh_oracle: bool = True) -> SimulatedDataset:
    """Draw one logged dataset of ``n`` prompts under the scenario's base policy, plus fresh draws.

    Parameters
    ----------
    scenario : a :class:`Scenario` or the name of one in :data:`SCENARIOS`.
    n : logged prompts (one base response each; every logged row carries an oracle
        label, coverage experiments mask them).
    seed : numpy Generator seed; the same seed gives the same data.
    draws_per_prompt : fresh draws per prompt and target policy.
    fresh_oracle : whether fresh draws carry oracle labels (ground truth / probes).

    Returns a :class:`SimulatedDataset` whose ``truth`` holds V(pi) per target.
    """
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    rng = np.random.default_rng(seed)
    difficulty = rng.standard_normal(n)
    base = sc.policies["base"]
    logged_draw = _draw(rng, difficulty, base, sc)
    ids = np.char.add("sim_", np.arange(n).astype(str))
    targets = {p: _logprob(logged_draw, difficulty, sc.policies[p]) for p in sc.targets}
    base_lp = _logprob(logged_draw, difficulty, base)
    if sc.logprob_noise > 0:
        base_lp = base_lp + sc.logprob_noise * rng.standard_normal(n)
        targets = {p: v + sc.logprob_noise * rng.standard_normal(n) for p, v in targets.items()}
        # a reported log-prob must be <= 0 (statistics.md 1); the noise can push a likely response above
        base_lp = np.minimum(base_lp, 0.0)
        targets = {p: np.minimum(v, 0.0) for p, v in targets.items()}
    logged = LoggedData(path="<simulated>", prompt_ids=ids, judge_scores=logged_draw.judge,
                        oracle_labels=logged_draw.oracle, base_logprobs=base_lp, target_logprobs=targets,
                        valid={p: np.ones(n, bool) for p in targets}, dropped={p: {} for p in targets},
                        response_lengths=np.round(200 + 50 * logged_draw.quality).clip(1))
    fresh = {}
    reps = np.repeat(difficulty, draws_per_prompt)
    for policy in sc.targets:
        f = _draw(rng, reps, sc.policies[policy], sc)
        fresh[policy] = FreshDraws(policy=policy, path="<simulated>", prompt_ids=np.repeat(ids, draws_per_prompt),
                                   judge_scores=f.judge,
                                   oracle_labels=f.oracle if fresh_oracle else np.full(reps.size, np.nan),
                                   draw_idx=np.tile(np.arange(draws_per_prompt), n))
    truth = {p: scenario_truth(sc, p) for p in sc.targets}
    return SimulatedDataset(logged=logged, fresh=fresh, truth=truth)


# --- the original process (kept: earlier tests, benchmarks and the planner use it) -----------------

def _legacy_scenario(policies: Mapping[str, float], surrogacy: bool) -> Scenario:
    return Scenario(name="legacy", policies={p: PolicySpec(float(s)) for p, s in policies.items()},
                    link="linear", judge_levels=None, labels="continuous")


def _legacy_oracle(rng, quality, judge):
    return np.clip(_sigmoid(1.2 * quality) + 0.05 * rng.standard_normal(quality.size), 0.0, 1.0)


@lru_cache(maxsize=64)
def true_value(shift: float, surrogacy: bool = True, n: int = 2_000_000) -> float:
    """V(pi) = E_pi[Y] for :func:`simulate`'s policy with this shift (fixed-seed Monte Carlo)."""
    rng = np.random.default_rng(_TRUTH_SEED)
    difficulty = rng.standard_normal(n)
    sc = _legacy_scenario({"base": shift}, surrogacy)
    draw = _draw(rng, difficulty, sc.policies["base"], sc, with_labels=surrogacy)
    if surrogacy:
        return float(draw.oracle.mean())
    return float(_legacy_oracle(rng, draw.quality, draw.judge).mean())


def simulate(n: int, seed: int, policies: dict[str, float] | None = None, surrogacy: bool = True,
             draws_per_prompt: int = 1, fresh_oracle: bool = True) -> SimulatedDataset:
    """The original process: continuous judge, linear link, exact log-probs, no gaming.

    Parameters
    ----------
    n : number of logged prompts (one base response each).
    seed : numpy Generator seed; the same seed gives the same data.
    policies : {name: shift}; must contain 'base'. Default :data:`DEFAULT_POLICIES`.
    surrogacy : True: Y = 0.15 + 0.7 S + Uniform(-0.15, 0.15) (judge sufficient);
        False: Y = clip(sigmoid(1.2 a) + N(0, 0.05^2), 0, 1) (judge not sufficient,
        statistics.md 7b).
    draws_per_prompt : fresh draws per prompt and target policy.
    fresh_oracle : whether fresh draws carry oracle labels (ground truth).

    For the stress processes (nonlinear link, discrete judge, strong shift, noisy
    log-probs, judge gaming) use :func:`simulate_scenario`.
    """
    policies = dict(policies or DEFAULT_POLICIES)
    sc = _legacy_scenario(policies, surrogacy)
    rng = np.random.default_rng(seed)
    difficulty = rng.standard_normal(n)
    base_spec = sc.policies["base"]
    logged_draw = _draw(rng, difficulty, base_spec, sc, with_labels=surrogacy)
    oracle = logged_draw.oracle if surrogacy else _legacy_oracle(rng, logged_draw.quality, logged_draw.judge)
    ids = np.char.add("sim_", np.arange(n).astype(str))
    targets = {p: _logprob(logged_draw, difficulty, sc.policies[p]) for p in sc.targets}
    logged = LoggedData(path="<simulated>", prompt_ids=ids, judge_scores=logged_draw.judge, oracle_labels=oracle,
                        base_logprobs=_logprob(logged_draw, difficulty, base_spec), target_logprobs=targets,
                        valid={p: np.ones(n, bool) for p in targets}, dropped={p: {} for p in targets},
                        response_lengths=np.round(200 + 50 * logged_draw.quality).clip(1))
    fresh = {}
    for policy in sc.targets:
        reps = np.repeat(difficulty, draws_per_prompt)
        f = _draw(rng, reps, sc.policies[policy], sc, with_labels=surrogacy)
        f_oracle = f.oracle if surrogacy else _legacy_oracle(rng, f.quality, f.judge)
        fresh[policy] = FreshDraws(policy=policy, path="<simulated>", prompt_ids=np.repeat(ids, draws_per_prompt),
                                   judge_scores=f.judge,
                                   oracle_labels=f_oracle if fresh_oracle else np.full(reps.size, np.nan),
                                   draw_idx=np.tile(np.arange(draws_per_prompt), n))
    truth = {p: true_value(float(policies[p]), surrogacy) for p in sc.targets}
    return SimulatedDataset(logged=logged, fresh=fresh, truth=truth)


SCENARIOS: dict[str, Scenario] = {
    "mild": Scenario("mild", {"base": PolicySpec(0.0), "similar": PolicySpec(0.1), "better": PolicySpec(0.25),
                              "worse": PolicySpec(-0.2)},
                     description="shifts <= 0.25 (raw ESS 0.94-0.99), nonlinear link, 11-level judge"),
    "strong": Scenario("strong", {"base": PolicySpec(0.0), "far": PolicySpec(1.0), "worse": PolicySpec(-0.6),
                                  "similar": PolicySpec(0.1)},
                       logprob_noise=0.3,
                       description="a target at shift 1.0 (raw ESS ~0.3, Hill < 3), noisy log-probs "
                                   "(sd 0.3), nonlinear link, 11-level judge"),
    "gaming": Scenario("gaming", {"base": PolicySpec(0.0, 0.1), "honest": PolicySpec(0.25, 0.1),
                                  "gamer": PolicySpec(0.0, 0.5)},
                       description="'gamer' games the judge on 50% of responses (base: 10%): judge +2 logits, "
                                   "oracle -0.3; surrogacy fails for it, the weights see it"),
    "gaming-unseen": Scenario("gaming-unseen", {"base": PolicySpec(0.0), "honest": PolicySpec(0.25),
                                                "gamer": PolicySpec(0.0, 0.5)},
                              description="as 'gaming' but the base never games: no logged row shows it"),
    "judge-blind-unseen": Scenario(
        "judge-blind-unseen", {"base": PolicySpec(0.0), "similar": PolicySpec(0.1), "better": PolicySpec(0.25),
                               "defective": PolicySpec(0.3, defect_rate=0.4)},
        description="'defective' has a judge-blind defect (oracle -0.25, judge unchanged) in 40% of responses "
                    "and the base never has it: the judge ranks it first, its truth is 0.09 lower and below "
                    "the base's; mean ratio exp(lp_t - lp_b) over logged rows 0.6"),
    "judge-blind-rare": Scenario(
        "judge-blind-rare", {"base": PolicySpec(0.0, defect_rate=0.05), "similar": PolicySpec(0.1, defect_rate=0.05),
                             "better": PolicySpec(0.25, defect_rate=0.05),
                             "defective": PolicySpec(0.3, defect_rate=0.4)},
        description="as 'judge-blind-unseen' but the base has the defect in 5% of responses, so the "
                    "weights see it (ratio 8 on those rows; raw ESS of 'defective' about 0.25)"),
}
