"""Off-policy estimates against the truth on simulated traffic, and against the formulas written out."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.core import off_policy
from bandit.core.off_policy import LoggedData

RATES = np.array([0.04, 0.05, 0.07])
CANDIDATES = {
    "uniform": np.full(3, 1 / 3),
    "always-best": np.array([0.0, 0.0, 1.0]),
    "epsilon-greedy": np.array([0.05, 0.05, 0.9]),
}


def _log(seed: int, logging: str, decisions: int = 20_000) -> LoggedData:
    """Bernoulli rewards at RATES, logged by a uniform policy or by Thompson sampling (its
    propensities estimated from its own posterior, batch by batch, as the proxy does)."""
    rng = np.random.default_rng(seed)
    actions, propensities = np.empty(decisions, dtype=np.intp), np.empty(decisions)
    rewards = np.empty(decisions)
    successes, failures = np.ones(3), np.ones(3)
    for start in range(0, decisions, 500):
        if logging == "uniform":
            share = np.full(3, 1 / 3)
        else:
            draws = rng.beta(successes, failures, size=(4096, 3))
            share = np.bincount(draws.argmax(axis=1), minlength=3) / 4096
            share = 0.05 / 3 + 0.95 * share  # a traffic floor keeps every arm logged
        batch = slice(start, start + 500)
        chosen = rng.choice(3, size=500, p=share)
        won = rng.random(500) < RATES[chosen]
        actions[batch], propensities[batch], rewards[batch] = chosen, share[chosen], won
        np.add.at(successes, chosen, won)
        np.add.at(failures, chosen, ~won)
    return LoggedData(actions, rewards, propensities)


@pytest.mark.parametrize("logging", ["uniform", "thompson"])
def test_the_95_percent_intervals_cover_the_true_value_on_at_least_90_percent_of_seeds(logging: str) -> None:
    seeds = 100
    logs = [_log(seed, logging) for seed in range(seeds)]
    for name, target in CANDIDATES.items():
        truth = float(target @ RATES)
        covered = {"ips": 0, "snips": 0, "dr": 0}
        for data in logs:
            for key, estimate in (
                ("ips", off_policy.ips(data, target)),
                ("snips", off_policy.snips(data, target)),
                ("dr", off_policy.doubly_robust(data, target)),
            ):
                covered[key] += estimate.lower <= truth <= estimate.upper
        assert all(count >= 0.9 * seeds for count in covered.values()), (logging, name, covered)


def _reference(data: LoggedData, target: np.ndarray) -> dict[str, float]:
    """The estimators as their formulas read, one decision at a time."""
    n = len(data.actions)
    weights = [target[a] / p for a, p in zip(data.actions, data.propensities, strict=True)]
    ips = sum(w * r for w, r in zip(weights, data.rewards, strict=True)) / n
    snips = sum(w * r for w, r in zip(weights, data.rewards, strict=True)) / sum(weights)
    means = []
    for arm in range(len(target)):
        logged = [r for a, r in zip(data.actions, data.rewards, strict=True) if a == arm]
        means.append(sum(logged) / len(logged) if logged else 0.0)
    direct = sum(target[arm] * means[arm] for arm in range(len(target)))
    dr = sum(direct + w * (r - means[a]) for a, r, w in zip(data.actions, data.rewards, weights, strict=True)) / n
    ess = sum(weights) ** 2 / sum(w * w for w in weights)
    return {"ips": ips, "snips": snips, "dr": dr, "ess": ess}


def test_the_estimates_equal_the_formulas_to_1e_6() -> None:
    data = _log(7, "thompson", decisions=3000)
    for target in CANDIDATES.values():
        expected = _reference(data, target)
        assert off_policy.ips(data, target).value == pytest.approx(expected["ips"], abs=1e-6)
        assert off_policy.snips(data, target).value == pytest.approx(expected["snips"], abs=1e-6)
        assert off_policy.doubly_robust(data, target).value == pytest.approx(expected["dr"], abs=1e-6)
        assert off_policy.effective_sample_size(data, target) == pytest.approx(expected["ess"], rel=1e-9)


def test_a_candidate_far_from_the_logging_policy_has_a_small_effective_sample() -> None:
    data = _log(3, "uniform", decisions=3000)
    assert off_policy.effective_sample_size(data, CANDIDATES["uniform"]) == pytest.approx(3000)
    assert off_policy.effective_sample_size(data, CANDIDATES["always-best"]) < 1100
