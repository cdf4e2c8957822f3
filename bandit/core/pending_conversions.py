"""Conversion mode without the pending bias: each decision counts as much as a conversion would
have been seen by its age.

A decision with no conversion yet is a failure only once its window has closed. Before that,
counting it as a failure (what a plain count does) biases an arm low, and most the arm whose
traffic is recent: the one the policy is moving towards. Instead each arm's exposure is

    E = Σ_decisions F(age),   mean = conversions / E,

with F the distribution of the time from decision to conversion, among conversions within the
window, learned from this experiment's own conversions (a histogram kept by the feedback
script). A decision older than the window counts 1, as before; with F right, conversions / E
is the rate (E[conversions] = rate · E). Decisions are kept per age slot (a 32nd of the window)
in the counters hash by the recorder's flush, so the proxy's snapshots, the stats and the
intervals all read the same exposure from one hash.

Until MIN_DELAYS conversions have been seen, F is taken as 1 (today's count). While the
experiment is younger than its window, long delays are under-represented among the delays seen,
so F is overestimated at long ages and the correction is partial until a window has passed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

import numpy as np

#: Age slots per feedback window (decisions older than the window need no slot).
AGE_SLOTS_PER_WINDOW = 32
#: Conversion delays are histogrammed in buckets 25 % wide, from 0.1 s to past 90 days.
DELAY_BUCKET_UPPER_S: tuple[float, ...] = tuple(0.1 * 1.25**i for i in range(90))
#: Conversions needed before their delays are trusted to describe F.
MIN_DELAYS = 20


def slot_width_s(window_s: float) -> float:
    return max(1.0, window_s / AGE_SLOTS_PER_WINDOW)


def age_slot(unix_s: float, window_s: float) -> int:
    """The age slot a decision made at `unix_s` is counted in."""
    return int(unix_s // slot_width_s(window_s))


def delay_bucket(delay_s: float) -> int:
    """The histogram bucket of a conversion `delay_s` after its decision."""
    return min(bisect.bisect_left(DELAY_BUCKET_UPPER_S, delay_s), len(DELAY_BUCKET_UPPER_S) - 1)


def seen_by(delays: Mapping[int, float], window_s: float) -> tuple[np.ndarray, np.ndarray] | None:
    """F as (ages, probabilities) to interpolate, from the delay histogram; None with too few delays."""
    total = sum(delays.values())
    if total < MIN_DELAYS:
        return None
    # Piecewise linear: flat between buckets, rising across each bucket's own span.
    edges, cumulative, running = [0.0], [0.0], 0.0
    for bucket in sorted(delays):
        lower = DELAY_BUCKET_UPPER_S[bucket - 1] if bucket > 0 else 0.0
        edges.append(min(lower, window_s))
        cumulative.append(running / total)
        running += delays[bucket]
        edges.append(min(DELAY_BUCKET_UPPER_S[bucket], window_s))
        cumulative.append(running / total)
    edges.append(window_s)
    cumulative.append(1.0)
    return np.maximum.accumulate(np.asarray(edges)), np.asarray(cumulative)


def exposure(
    decisions: np.ndarray,
    slots: Sequence[Mapping[int, float]],
    delays: Mapping[int, float],
    window_s: float,
    now: float,
) -> np.ndarray:
    """Each arm's decisions weighted by F(age); `slots[i]` maps arm i's age slots to decisions."""
    curve = seen_by(delays, window_s)
    if curve is None:
        return decisions
    ages_at, probabilities = curve
    width = slot_width_s(window_s)
    exposed = decisions.astype(np.float64).copy()
    for arm, per_slot in enumerate(slots):
        for slot, count in per_slot.items():
            age = now - (slot + 0.5) * width
            # Past the window: exposed in full. Ahead of now by more than a slot: counted under
            # another slot width (the window was changed), so not known; counted in full too.
            if age >= window_s or age < -width or count <= 0:
                continue
            seen = float(np.interp(max(age, 0.0), ages_at, probabilities))
            exposed[arm] -= count * (1.0 - seen)
    return np.maximum(exposed, 0.0)


def live_slots(now: float, window_s: float) -> int:
    """The oldest age slot that can still be younger than the window."""
    return math.floor((now - window_s) / slot_width_s(window_s)) - 1
