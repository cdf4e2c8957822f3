from __future__ import annotations

import numpy as np
import pytest

from policies import (
    ArmStatistics,
    EpsilonGreedy,
    StaticWeights,
    ThompsonSampling,
    credible_interval,
    probability_best,
    sample_means,
)

STATS = ArmStatistics.from_lists([100, 100, 100], [4, 5, 7])


def test_thompson_draws_exactly_the_beta_posterior_argmax_under_a_seed() -> None:
    chosen = ThompsonSampling().choose(STATS, np.random.default_rng(7), 6)
    alpha, beta = 1 + np.array([4, 5, 7]), 1 + np.array([96, 95, 93])
    expected = np.random.default_rng(7).beta(alpha, beta, size=(6, 3)).argmax(axis=1)
    assert chosen.tolist() == expected.tolist()


def test_thompson_allocation_matches_its_own_choices() -> None:
    stats = ArmStatistics.from_lists([400, 400, 400], [16, 20, 28])
    rng = np.random.default_rng(1)
    allocation = ThompsonSampling().allocation(stats, rng)
    observed = np.bincount(ThompsonSampling().choose(stats, rng, 20_000), minlength=3) / 20_000
    assert allocation.sum() == pytest.approx(1.0)
    assert np.abs(allocation - observed).max() < 0.02
    assert allocation.argmax() == 2


def test_gaussian_thompson_prefers_the_higher_mean() -> None:
    stats = ArmStatistics.from_lists([50, 50], [50 * 3.0, 50 * 3.5], [50 * 10.0, 50 * 13.25])
    choices = ThompsonSampling(model="gaussian").choose(stats, np.random.default_rng(0), 2000)
    assert (choices == 1).mean() > 0.9


def test_epsilon_greedy_explores_at_rate_epsilon() -> None:
    allocation = EpsilonGreedy(epsilon=0.3).allocation(STATS, np.random.default_rng(0))
    assert allocation.tolist() == pytest.approx([0.1, 0.1, 0.8])
    choices = EpsilonGreedy(epsilon=0.3).choose(STATS, np.random.default_rng(3), 30_000)
    assert np.bincount(choices) / 30_000 == pytest.approx([0.1, 0.1, 0.8], abs=0.01)


def test_epsilon_greedy_tries_untried_arms_first_and_decays() -> None:
    stats = ArmStatistics.from_lists([10, 0, 10], [9, 0, 1])
    assert EpsilonGreedy(epsilon=0.0).allocation(stats, np.random.default_rng(0)).tolist() == [0, 1, 0]
    decayed = EpsilonGreedy(epsilon=0.5, decay=0.01)
    assert decayed.current_epsilon(STATS) == pytest.approx(0.5 / (1 + 0.01 * 300))


def test_greedy_ties_are_shared() -> None:
    stats = ArmStatistics.from_lists([10, 10, 10], [5, 5, 1])
    assert EpsilonGreedy(epsilon=0.0).allocation(stats, np.random.default_rng(0)).tolist() == [0.5, 0.5, 0]


def test_static_weights_route_by_weight() -> None:
    policy = StaticWeights((1.0, 3.0, 0.0))
    assert policy.allocation(STATS, np.random.default_rng(0)).tolist() == [0.25, 0.75, 0.0]
    choices = policy.choose(STATS, np.random.default_rng(5), 20_000)
    assert 2 not in choices
    assert (choices == 1).mean() == pytest.approx(0.75, abs=0.015)


def test_probability_best_and_intervals() -> None:
    rng = np.random.default_rng(2)
    p_best = probability_best(sample_means(ArmStatistics.from_lists([5000, 5000], [200, 350]), "beta", rng, 4000))
    assert p_best[1] > 0.99
    lower, upper = credible_interval(STATS, "beta")
    assert np.all(lower < STATS.means) and np.all(STATS.means < upper)
    # Beta(8, 94): the 95 % interval of a 7 % rate after 100 trials is about [3.4 %, 13.8 %].
    assert lower[2] == pytest.approx(0.0348, abs=0.002) and upper[2] == pytest.approx(0.1376, abs=0.002)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EpsilonGreedy(epsilon=1.5), "epsilon must be in"),
        (lambda: EpsilonGreedy(epsilon=-0.1), "epsilon must be in"),
        (lambda: EpsilonGreedy(decay=-1), "decay must be"),
        (lambda: StaticWeights(()), "at least one arm"),
        (lambda: StaticWeights((0.0, 0.0)), "must not all be 0"),
        (lambda: StaticWeights((1.0, -1.0)), "finite and >= 0"),
        (lambda: ArmStatistics.from_lists([], []), "at least one arm"),
        (lambda: ArmStatistics.from_lists([1, 2], [1]), "one shape"),
    ],
)
def test_invalid_settings_are_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
