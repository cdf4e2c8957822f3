"""StatisticsTracker against the documented arithmetic: discounting, Page-Hinkley, gradient preferences."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from policies import ChangeAction, DetectedChange, GradientBandit, GradientStep, PageHinkley, StatisticsTracker
from policies._statistics import FloatArray
from tests.policies.references import sutton_barto_step

RNG = np.random.default_rng


def stream(seed: int, arms: int, steps: int) -> tuple[list[int], list[float]]:
    rng = RNG(seed)
    return rng.integers(arms, size=steps).tolist(), rng.random(steps).tolist()


# ---------------------------------------------------------------------------------------------
# Discounting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("discount", [0.9, 0.99, 0.999])
def test_discounted_statistics_equal_the_direct_sum(discount: float) -> None:
    arms_played, rewards = stream(1, 4, 3000)
    tracker = StatisticsTracker(4, discount=discount)
    for t, (arm, reward) in enumerate(zip(arms_played, rewards, strict=True), start=1):
        tracker.observe(arm, reward)
        if t in (1, 2, 17, 500, 3000):
            # Σ_s γ^(T−s) over the observations s ≤ T of each arm.
            weights = discount ** (t - np.arange(1, t + 1))
            played = np.array(arms_played[:t])
            seen = np.array(rewards[:t])
            stats = tracker.statistics
            for k in range(4):
                mine = played == k
                assert stats.pulls[k] == pytest.approx(float(np.sum(weights[mine])), abs=1e-9)
                assert stats.reward_sum[k] == pytest.approx(float(np.sum(weights[mine] * seen[mine])), abs=1e-9)
                assert stats.reward_sq_sum[k] == pytest.approx(float(np.sum(weights[mine] * seen[mine] ** 2)), abs=1e-9)
    # The effective memory is about 1/(1 − γ) observations, whatever the length of the stream.
    if discount <= 0.99:
        assert tracker.statistics.pulls.sum() == pytest.approx((1 - discount**3000) / (1 - discount), rel=1e-9)


def test_no_discount_gives_plain_sums() -> None:
    arms_played, rewards = stream(2, 3, 2000)
    tracker = StatisticsTracker(3)
    for arm, reward in zip(arms_played, rewards, strict=True):
        tracker.observe(arm, reward)
    played, seen = np.array(arms_played), np.array(rewards)
    stats = tracker.statistics
    assert stats.pulls.tolist() == np.bincount(played, minlength=3).astype(float).tolist()
    np.testing.assert_allclose(stats.reward_sum, np.bincount(played, weights=seen, minlength=3), rtol=0, atol=1e-9)
    np.testing.assert_allclose(stats.reward_sq_sum, np.bincount(played, weights=seen**2, minlength=3), atol=1e-9)
    assert stats.preferences is None
    assert tracker.step == 2000


def test_statistics_are_a_snapshot_until_the_next_observation() -> None:
    tracker = StatisticsTracker(2)
    tracker.observe(0, 1.0)
    first = tracker.statistics
    assert tracker.statistics is first
    tracker.observe(1, 0.5)
    assert first.pulls.tolist() == [1.0, 0.0]
    assert tracker.statistics.pulls.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("arms", "discount", "message"),
    [
        (0, 1.0, r"at least one arm"),
        (2, 0.0, r"^discount must be in \(0, 1\]"),
        (2, 1.5, r"^discount must be in \(0, 1\]"),
        (2, math.nan, r"^discount must be in \(0, 1\]"),
    ],
)
def test_invalid_tracker_settings_are_refused(arms: int, discount: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StatisticsTracker(arms, discount=discount)


# ---------------------------------------------------------------------------------------------
# Page-Hinkley change detection
# ---------------------------------------------------------------------------------------------


@dataclass
class HandDetector:
    """The module docstring's recursion: x̄ the mean since the last alarm,
    g⁺ ← max(0, g⁺ + x − x̄ − δ), g⁻ ← max(0, g⁻ + x̄ − x − δ), alarm when either passes λ."""

    delta: float
    threshold: float
    seen: list[float] = field(default_factory=list)
    rise: float = 0.0
    fall: float = 0.0

    def update(self, x: float) -> bool:
        self.seen.append(x)
        mean = sum(self.seen) / len(self.seen)
        self.rise = max(0.0, self.rise + x - mean - self.delta)
        self.fall = max(0.0, self.fall + mean - x - self.delta)
        if self.rise > self.threshold or self.fall > self.threshold:
            self.seen, self.rise, self.fall = [], 0.0, 0.0
            return True
        return False


@dataclass
class HandTracker:
    """Undiscounted statistics with the documented alarm actions, one plain loop per observation."""

    arms: int
    settings: PageHinkley
    step: int = 0
    changes: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pulls, self.sums, self.squares = [0.0] * self.arms, [0.0] * self.arms, [0.0] * self.arms
        self.detectors = [HandDetector(self.settings.delta, self.settings.threshold) for _ in range(self.arms)]

    def observe(self, arm: int, x: float) -> None:
        self.step += 1
        self.pulls[arm] += 1.0
        self.sums[arm] += x
        self.squares[arm] += x * x
        if not self.detectors[arm].update(x):
            return
        self.changes.append((self.step, arm))
        if self.settings.action == "reset_arm":
            self.pulls[arm] = self.sums[arm] = self.squares[arm] = 0.0
        elif self.settings.action == "reset_all":
            self.pulls, self.sums, self.squares = [0.0] * self.arms, [0.0] * self.arms, [0.0] * self.arms
            self.detectors = [HandDetector(self.settings.delta, self.settings.threshold) for _ in range(self.arms)]


@pytest.mark.parametrize("action", ["flag", "reset_arm", "reset_all"])
def test_change_detection_follows_the_documented_recursion_and_actions(action: ChangeAction) -> None:
    # Three arms whose rates jump every 400 observations, and a low threshold: many alarms,
    # each one a chance for the tracker to part ways with the hand version.
    settings = PageHinkley(delta=0.02, threshold=4.0, action=action)
    rng = RNG(3)
    tracker, hand = StatisticsTracker(3, change_detection=settings), HandTracker(3, settings)
    for t in range(6000):
        arm = int(rng.integers(3))
        rate = [0.2, 0.5, 0.8][(arm + t // 400) % 3]
        x = float(rng.random() < rate)
        tracker.observe(arm, x)
        hand.observe(arm, x)
    assert len(hand.changes) >= 10
    assert tracker.changes == [DetectedChange(step, arm) for step, arm in hand.changes]
    stats = tracker.statistics
    np.testing.assert_allclose(stats.pulls, hand.pulls, rtol=0, atol=1e-9)
    np.testing.assert_allclose(stats.reward_sum, hand.sums, rtol=0, atol=1e-9)
    np.testing.assert_allclose(stats.reward_sq_sum, hand.squares, rtol=0, atol=1e-9)


def first_alarm_of_a_drop(ones: int, threshold: float) -> int:
    """After `ones` rewards of 1 (δ = 0), the k-th 0 adds x̄ = ones/(ones + k) to g⁻: the first
    k with Σ_{i≤k} ones/(ones + i) > λ alarms, on observation ones + k."""
    total, k = 0.0, 0
    while total <= threshold:
        k += 1
        total += ones / (ones + k)
    return ones + k


@pytest.mark.parametrize("action", ["flag", "reset_arm", "reset_all"])
def test_an_alarm_resets_what_its_action_says_and_is_recorded(action: ChangeAction) -> None:
    # Arm 0 pays a constant 0.5 (x = x̄, so its detector never moves); arm 1 pays ten 1s,
    # then 0s. They alternate, arm 0 first, so arm 1's n-th observation is step 2n.
    alarm_at = first_alarm_of_a_drop(10, 2.0)
    assert alarm_at == 13  # 10/11 + 10/12 = 1.74 ≤ 2 < 1.74 + 10/13 = 2.51
    tracker = StatisticsTracker(2, change_detection=PageHinkley(delta=0.0, threshold=2.0, action=action))
    for n in range(1, alarm_at + 1):
        tracker.observe(0, 0.5)
        tracker.observe(1, 1.0 if n <= 10 else 0.0)
    assert tracker.changes == [DetectedChange(step=2 * alarm_at, arm=1)]
    stats = tracker.statistics
    arm0 = [13.0, 6.5, 3.25]
    arm1 = {"flag": [13.0, 10.0, 10.0], "reset_arm": [0.0] * 3, "reset_all": [0.0] * 3}[action]
    if action == "reset_all":
        arm0 = [0.0] * 3
    assert [stats.pulls[0], stats.reward_sum[0], stats.reward_sq_sum[0]] == arm0
    assert [stats.pulls[1], stats.reward_sum[1], stats.reward_sq_sum[1]] == arm1
    # Arm 1's detector starts over at the alarm: more 0s are its new normal, not a change.
    for _ in range(50):
        tracker.observe(1, 0.0)
    assert len(tracker.changes) == 1
    assert tracker.statistics.pulls[1] == arm1[0] + 50


def siegmund_false_alarm_probability(delta: float, threshold: float, variance: float, steps: int) -> float:
    """P(a two-sided Page-Hinkley test alarms within `steps` observations of a stationary stream).

    Siegmund's approximation of a one-sided CUSUM's average run length with increments of mean
    −δ and variance σ²: ARL = (e^{2δh/σ²} − 2δh/σ² − 1) / (2δ²/σ²), h = λ + 1.166σ (the
    overshoot correction). Two symmetric sides halve it; alarms are then close to Poisson.
    """
    h = threshold + 1.166 * math.sqrt(variance)
    a = 2.0 * delta * h / variance
    one_sided = (math.exp(a) - a - 1.0) / (2.0 * delta**2 / variance)
    return 1.0 - math.exp(-steps / (one_sided / 2.0))


def test_false_alarm_rate_on_a_stationary_stream_matches_theory() -> None:
    # λ = 20 (the first default) on Bernoulli(0.5): σ² = 1/4, so 2δh/σ² ≈ 8.2 and ARL ≈ 94,000
    # two-sided. Over 20,000 observations that is a ~19 % chance of a false alarm per stream, a
    # rate high enough to measure: 100 streams, count ~ Binomial(100, p); ±4σ (≈ ±16) leaves out
    # a detector without the δ drift (alarms on ~every stream) and one that never alarms.
    settings = PageHinkley(threshold=20.0)
    # The default λ = 30 was chosen from the same formula: about 1 % per 20,000 observations.
    default = PageHinkley()
    assert siegmund_false_alarm_probability(default.delta, default.threshold, 0.25, 20_000) < 0.02
    streams, steps = 100, 20_000
    p = siegmund_false_alarm_probability(settings.delta, settings.threshold, 0.25, steps)
    assert 0.15 < p < 0.25
    alarmed = 0
    for seed in range(streams):
        tracker = StatisticsTracker(1, change_detection=PageHinkley(threshold=20.0, action="flag"))
        for x in (RNG(seed).random(steps) < 0.5).astype(float).tolist():
            tracker.observe(0, x)
        alarmed += bool(tracker.changes)
    assert abs(alarmed - streams * p) <= 4 * math.sqrt(streams * p * (1 - p))


def test_a_drop_from_0_3_to_0_1_is_detected_within_the_expected_delay() -> None:
    # After the switch g⁻ gains x̄ − x − δ ≈ 0.3 − 0.1 − 0.05 = 0.15 per step (x̄ still holds the
    # 2,000 earlier rewards), so it passes λ = 20 after about λ/0.15 ≈ 133 steps. Its spread:
    # sd of a first passage ≈ sqrt(λσ²/drift³) ≈ 23 steps (σ² = 0.09), so twice the mean
    # (≈ 5.7σ late) is a safe ceiling, and the median of ten runs stays within ±0.4 of it.
    settings = PageHinkley(action="flag")
    before, after = 2000, 1000
    expected = settings.threshold / (0.3 - 0.1 - settings.delta)
    delays = []
    for seed in range(10):
        rng = RNG(100 + seed)
        rewards = np.concatenate([rng.random(before) < 0.3, rng.random(after) < 0.1]).astype(float)
        tracker = StatisticsTracker(2, change_detection=settings)
        for x in rewards.tolist():
            tracker.observe(1, x)
        late = [change.step for change in tracker.changes if change.step > before]
        assert late, f"seed {seed}: the drop was never detected"
        assert all(change.arm == 1 for change in tracker.changes)
        delays.append(late[0] - before)
    assert max(delays) <= 2 * expected
    assert 0.6 * expected <= float(np.median(delays)) <= 1.4 * expected


@pytest.mark.parametrize(
    ("delta", "threshold", "message"),
    [
        (-0.1, 20.0, r"^delta must be >= 0"),
        (math.nan, 20.0, r"^delta must be >= 0"),
        (0.05, 0.0, r"^threshold must be > 0"),
        (0.05, math.nan, r"^threshold must be > 0"),
    ],
)
def test_invalid_detector_settings_name_the_field(delta: float, threshold: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PageHinkley(delta=delta, threshold=threshold)


# ---------------------------------------------------------------------------------------------
# Gradient preferences
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [GradientStep(), GradientStep(step_size=0.3, momentum=0.5), GradientStep(step_size=0.05, baseline=False)],
)
def test_tracker_preferences_follow_the_gradient_update_with_a_running_mean_baseline(step: GradientStep) -> None:
    arms_played, rewards = stream(4, 3, 400)
    tracker = StatisticsTracker(3, gradient=step)
    preferences, velocity = [0.0] * 3, [0.0] * 3
    seen: list[float] = []
    for arm, reward in zip(arms_played, rewards, strict=True):
        tracker.observe(arm, reward)
        # The baseline is the mean of the rewards before this one (0 before the first).
        baseline = sum(seen) / len(seen) if seen and step.baseline else 0.0
        preferences, velocity = sutton_barto_step(
            preferences, velocity, arm, reward - baseline, step.step_size, step.momentum
        )
        seen.append(reward)
    assert tracker.statistics.preferences is not None
    np.testing.assert_allclose(tracker.statistics.preferences, preferences, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_bandit_learns_the_better_bernoulli_arm(seed: int) -> None:
    # 0.2 vs 0.8 with step 0.1: the expected preference gap grows by about 0.1·0.6·π(1−π) per step,
    # so a few thousand steps take it well past the ln 9 ≈ 2.2 that π > 0.9 needs (runs end
    # near 2.8 to 3.0 per side). A sign error or a missing baseline update would not get there.
    rates = [0.2, 0.8]
    tracker = StatisticsTracker(2, gradient=GradientStep(step_size=0.1))
    policy = GradientBandit()
    rng = RNG(seed)
    for _ in range(3000):
        arm = int(policy.choose(tracker.statistics, rng, 1)[0])
        tracker.observe(arm, float(rng.random() < rates[arm]))
    preferences: FloatArray | None = tracker.statistics.preferences
    assert preferences is not None and preferences[1] > preferences[0]
    assert policy.allocation(tracker.statistics, rng)[1] > 0.9
