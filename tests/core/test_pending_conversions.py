"""The exposure of pending conversions: decisions weighted by the chance their conversion is seen."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.core.pending_conversions import (
    MIN_DELAYS,
    age_slot,
    delay_bucket,
    exposure,
    slot_width_s,
)

WINDOW = 320.0  # 10 s slots


def test_with_too_few_conversions_seen_every_decision_counts_in_full() -> None:
    decisions = np.array([100.0, 50.0])
    slots = [{age_slot(1000.0, WINDOW): 100.0}, {}]
    few = {delay_bucket(30.0): MIN_DELAYS - 1}
    assert exposure(decisions, slots, few, WINDOW, 1000.0).tolist() == [100.0, 50.0]


def test_decisions_younger_than_every_delay_seen_count_nothing_older_ones_in_full() -> None:
    now = 10_000.0
    delays = {delay_bucket(60.0): 40}  # every conversion came about a minute after its decision
    young, old = age_slot(now - 5, WINDOW), age_slot(now - 200, WINDOW)
    decisions = np.array([300.0])
    exposed = exposure(decisions, [{young: 100.0, old: 100.0}], delays, WINDOW, now)
    # 100 decisions never in a slot (older than the window), 100 seen in full, 100 not yet.
    assert exposed[0] == pytest.approx(200.0, abs=1.0)


def test_exposure_makes_the_rate_unbiased_for_exponential_delays() -> None:
    rng = np.random.default_rng(3)
    rate, mean_delay, now = 0.1, 30.0, 50_000.0
    made = now - rng.uniform(0, WINDOW, size=200_000)  # decisions over the last window
    converts = rng.random(made.size) < rate
    delay = rng.exponential(mean_delay, size=made.size)
    within = converts & (delay < WINDOW)
    seen = within & (made + delay <= now)
    histogram: dict[int, float] = {}
    for value in delay[seen]:
        histogram[delay_bucket(float(value))] = histogram.get(delay_bucket(float(value)), 0) + 1
    slots: dict[int, float] = {}
    for when in made[now - made < WINDOW + slot_width_s(WINDOW)]:
        slot = age_slot(float(when), WINDOW)
        slots[slot] = slots.get(slot, 0) + 1
    exposed = exposure(np.array([float(made.size)]), [slots], histogram, WINDOW, now)[0]
    truth = within.sum() / made.size  # the rate of conversions within the window
    assert seen.sum() / exposed == pytest.approx(truth, rel=0.03)
    assert seen.sum() / made.size < 0.95 * truth  # what counting pending decisions as failures gives
