"""The service's limits on feedback, checked before a reward is sent.

They mirror `bandit/core/payloads.py` and `bandit/core/models.py`, which the client may not import
(that package pulls numpy); tests/client/test_limits.py checks that they still agree. A reward the
service would refuse as malformed is refused here, at `add`/`reward`, with a message naming it:
inside a batch, one malformed item would make the service refuse the whole request.
"""

from __future__ import annotations

import math
from numbers import Real

#: Rewards in one POST /feedback (the service answers 422 past it).
MAX_FEEDBACK_ITEMS = 1000
#: Longest decision id the service reads.
MAX_DECISION_ID_LENGTH = 256
#: Largest reward in absolute value.
MAX_REWARD_MAGNITUDE = 1e15

Item = tuple[str, float]


def checked_item(decision: object, value: object) -> Item:
    """(decision, reward) as the service will read them, or ValueError saying what is wrong."""
    if not isinstance(decision, str) or not decision:
        raise ValueError(f"decision must be a non-empty string (the X-Bandit-Decision header), not {decision!r}")
    if len(decision) > MAX_DECISION_ID_LENGTH:
        raise ValueError(
            f"decision is {len(decision)} characters long; a decision id has at most {MAX_DECISION_ID_LENGTH}"
        )
    if not isinstance(value, Real):  # bool is one: a click or not reads as 1.0 or 0.0
        raise ValueError(f"reward must be a number, not {value!r}")
    reward = float(value)
    if not math.isfinite(reward) or abs(reward) > MAX_REWARD_MAGNITUDE:
        raise ValueError(f"reward {reward} must be finite and within ±{MAX_REWARD_MAGNITUDE:g}")
    return decision, reward
