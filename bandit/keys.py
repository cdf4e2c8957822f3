"""Every Redis key and channel the service uses, in one place.

All keys of one experiment share the hash tag ``{name}``, so each experiment lives
in one Redis Cluster slot and its Lua scripts touch one slot only.
"""

from __future__ import annotations

PREFIX = "mab"

#: Set of experiment names (the one key outside any experiment's slot).
EXPERIMENTS = f"{PREFIX}:experiments"
#: Shared HMAC secret for decision ids when none is configured.
SECRET = f"{PREFIX}:secret"
#: Decision-id signing keys shared by every replica (JSON keyring; see bandit/shared_keys.py).
KEYRING = f"{PREFIX}:signing-keys"
#: Pub/sub channel announcing the name of an experiment whose config changed.
CHANGES_CHANNEL = f"{PREFIX}:changes"


def config(experiment: str) -> str:
    """JSON of the experiment (string)."""
    return f"{PREFIX}:{{{experiment}}}:config"


def stats(experiment: str) -> str:
    """Per-arm counters (hash): see the field helpers below."""
    return f"{PREFIX}:{{{experiment}}}:stats"


def latency(experiment: str) -> str:
    """Per-arm latency histogram (hash of "<arm>:<bucket>" -> count)."""
    return f"{PREFIX}:{{{experiment}}}:latency"


def series(experiment: str, incarnation: str, bucket: int) -> str:
    """One time bucket of the dashboard's history (hash; expires, so the history is bounded).

    Scoped by incarnation: a reset experiment starts a new history, and the writes of a
    replica still on the old incarnation cannot land in it.
    """
    return f"{PREFIX}:{{{experiment}}}:series:{incarnation}:{bucket}"


def config_history(experiment: str) -> str:
    """Earlier configs of the experiment, newest first (list, capped): what rollback restores."""
    return f"{PREFIX}:{{{experiment}}}:history"


def feedback_seen(experiment: str, decision_nonce: str) -> str:
    """Marker that a decision's reward was counted; expires after the feedback window."""
    return f"{PREFIX}:{{{experiment}}}:seen:{decision_nonce}"


# Fields of the stats hash. `incarnation` identifies the current life of the experiment.
INCARNATION_FIELD = "incarnation"


def decisions_field(arm: str) -> str:
    return f"d:{arm}"


def rewards_field(arm: str) -> str:
    return f"n:{arm}"


def reward_sum_field(arm: str) -> str:
    return f"s:{arm}"


def reward_sq_field(arm: str) -> str:
    return f"q:{arm}"


def errors_field(arm: str) -> str:
    return f"e:{arm}"


def mirror_dropped_field(arm: str) -> str:
    """Copies for a shadow arm dropped because the mirror queue was full."""
    return f"md:{arm}"


def latency_field(arm: str, bucket: int) -> str:
    return f"{arm}:{bucket}"


# Fields only the series buckets have: latency histogram entries ("l:" + latency_field),
# and what the sampler saw once per bucket (see bandit/series.py).
SERIES_LATENCY_PREFIX = "l:"
SAMPLED_FIELD = "sampled"


def p_best_field(arm: str) -> str:
    return f"p:{arm}"


def mean_field(arm: str) -> str:
    return f"m:{arm}"


# The statistics the policy reads, written by the feedback script (see record_feedback.lua):
# discounted count, sum and sum of squares as of the arm's last step, and that step.
STEP_FIELD = "step"


def policy_pulls_field(arm: str) -> str:
    return f"pn:{arm}"


def policy_sum_field(arm: str) -> str:
    return f"ps:{arm}"


def policy_sq_field(arm: str) -> str:
    return f"pq:{arm}"


def policy_step_field(arm: str) -> str:
    return f"pt:{arm}"


def preference_field(arm: str) -> str:
    """Gradient-bandit preference."""
    return f"h:{arm}"


def changes_field(arm: str) -> str:
    """Number of changes the detector found in the arm's rewards."""
    return f"cd:{arm}"


def last_change_field(arm: str) -> str:
    """Unix time of the last detected change."""
    return f"ct:{arm}"
