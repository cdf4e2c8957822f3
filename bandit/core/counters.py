"""An experiment's counters as Redis holds them, one column per arm: what statistics are made from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ArmCounters:
    """Raw per-arm counters from Redis, in the order of the arms asked for; shapes (K,)."""

    incarnation: str | None
    decisions: np.ndarray
    rewards: np.ndarray
    reward_sum: np.ndarray
    reward_sq_sum: np.ndarray
    errors: np.ndarray
    mirror_dropped: np.ndarray
    # Decisions each arm should have served by the allocation the policy announced at each decision.
    expected: np.ndarray
    # What the policy reads: discounted (and reset on detected changes) rewards, sums, squares.
    policy_pulls: np.ndarray
    policy_sum: np.ndarray
    policy_sq_sum: np.ndarray
    preferences: np.ndarray
    changes: np.ndarray
    # Unix time of each arm's last detected change, 0 for none.
    last_change_at: np.ndarray
    # Conversion mode: decisions weighted by the chance their conversion would be seen by now
    # (bandit/core/pending_conversions.py); the decisions themselves otherwise.
    exposure: np.ndarray | None = None
