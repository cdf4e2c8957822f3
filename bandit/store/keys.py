"""Every Redis key, channel and hash field the service uses, in one place (the Lua scripts' too).

All keys of one experiment share the hash tag ``{name}``, so each experiment lives in one
Redis Cluster slot and its Lua scripts touch one slot only. The scripts in ``lua/`` spell
their field names out (Lua cannot import this module); ``tests/store/test_keys.py`` checks
that every name they use is declared here, and docs/design.md tabulates them with their bounds.
"""

from __future__ import annotations

PREFIX = "mab"

# -- keys outside any experiment's slot ---------------------------------------------------
#: Set of experiment names.
EXPERIMENTS = f"{PREFIX}:experiments"
#: Decision-id HMAC secret shared by every replica when BANDIT_SECRET is not set (until a rotation).
SECRET = f"{PREFIX}:secret"
#: The rotated decision-id keyring shared by every replica (JSON; see bandit/store/keyring.py).
KEYRING = f"{PREFIX}:signing-keys"
#: Pub/sub channel announcing the name of an experiment whose config changed.
CHANGES_CHANNEL = f"{PREFIX}:changes"


# -- keys of one experiment -----------------------------------------------------------------
def config(experiment: str) -> str:
    """JSON of the experiment (string)."""
    return f"{PREFIX}:{{{experiment}}}:config"


def counters_hash(experiment: str) -> str:
    """Per-arm counters and the policy's state (hash): see the fields below."""
    return f"{PREFIX}:{{{experiment}}}:stats"


def latency_histogram(experiment: str) -> str:
    """Per-arm latency histogram (hash of :func:`latency_field` -> count)."""
    return f"{PREFIX}:{{{experiment}}}:latency"


def series(experiment: str, incarnation: str, bucket: int) -> str:
    """One time bucket of the dashboard's history (hash; expires, so the history is bounded).

    Scoped by incarnation: a reset experiment starts a new history, and the writes of a
    replica still on the old incarnation cannot land in it.
    """
    return f"{PREFIX}:{{{experiment}}}:series:{incarnation}:{bucket}"


def audit_log(experiment: str) -> str:
    """Stream of the experiment's changes, operator's and automatic, capped in length."""
    return f"{PREFIX}:{{{experiment}}}:audit"


def autopilot_lease(experiment: str) -> str:
    """Which replica may act on the experiment by itself now (a token, with an expiry)."""
    return f"{PREFIX}:{{{experiment}}}:lease"


def autopilot_verdict(experiment: str) -> str:
    """The lease holder's last judgement of the guardrails and canary (JSON), for stats."""
    return f"{PREFIX}:{{{experiment}}}:verdict"


def decision_log(experiment: str) -> str:
    """Stream of the experiment's logged decisions and their rewards (bandit/store/decision_log.py)."""
    return f"{PREFIX}:{{{experiment}}}:log"


def config_history(experiment: str) -> str:
    """Earlier configs of the experiment, newest first (list, capped): what rollback restores."""
    return f"{PREFIX}:{{{experiment}}}:history"


def feedback_seen(experiment: str, decision_marker: str) -> str:
    """Marker that the reward of a decision with a random nonce (an id of an earlier release) was
    counted (string ``1``); expires at the end of that decision's feedback window.

    Bound: one key per such reward, until the last of those ids passes its window.
    """
    return f"{PREFIX}:{{{experiment}}}:seen:{decision_marker}"


#: Sequence numbers of one issuer per bitmap of rewarded decisions: 2^16 bits, 8 KiB at most.
REWARDED_BLOCK_BITS = 16
_REWARDED_OFFSET_MASK = (1 << REWARDED_BLOCK_BITS) - 1


def feedback_rewarded(experiment: str, issuer: str, block: int) -> str:
    """Which decisions of one issuer's block of 2^16 sequence numbers have had their reward
    counted (string used as a bitmap: bit ``sequence & 0xFFFF``, as SETBIT numbers bits, set by
    BITFIELD SET u1).

    Bound: 8 KiB of bits per key at most (one bit per decision issued in the block, rewarded or
    not, up to the highest rewarded one; Redis allocates up to twice that while the string
    grows, about 16 KiB measured for a full block) and one key per (issuer, block) that got a
    reward; the key expires as a whole at the latest end of the feedback window of the
    decisions written into it (record_feedback.lua only moves that time later).
    """
    return f"{PREFIX}:{{{experiment}}}:rewarded:{issuer}:{block}"


def rewarded_position(sequence: int) -> tuple[int, int]:
    """The block of :func:`feedback_rewarded` a sequence number falls into, and its bit there."""
    return sequence >> REWARDED_BLOCK_BITS, sequence & _REWARDED_OFFSET_MASK


def flush_sequence(experiment: str, replica: str) -> str:
    """The last decision batch of one replica applied to the experiment (string; expires).

    A batch whose reply was lost is sent again with the same sequence number: the script
    skips it when this already holds that number, so decisions are counted once.
    """
    return f"{PREFIX}:{{{experiment}}}:flushed:{replica}"


def ack_fence(experiment: str) -> str:
    """A string written only under BANDIT_ACK_REPLICAS, after a feedback batch that held a duplicate.

    The duplicate's reward was counted by an earlier write, perhaps of another connection, which
    WAIT on this connection does not cover; the fence, written on this connection after the
    script, comes later in the replication stream, so waiting for it waits for that write too.
    Bound: one per experiment; expires 60 s after its last write (durability.FENCE_TTL_S).
    """
    return f"{PREFIX}:{{{experiment}}}:ack-fence"


def decision_marker(issued_ms: int, nonce: str) -> str:
    """What names one decision with a random nonce in its seen-marker key: its issue time (ms, hex) and its nonce."""
    return f"{issued_ms:x}-{nonce}"


# -- fields of the counters hash (and of the series buckets, which reuse some) --------------
#: The current life of the experiment: a reset gives it a new one.
INCARNATION_FIELD = "incarnation"
#: The one field of an audit stream entry: the entry as JSON (bandit.core.payloads.AuditEntry).
AUDIT_ENTRY_FIELD = "entry"
#: Rewards counted so far across all arms: the step the discounted statistics are stored at.
STEP_FIELD = "step"
#: Gradient bandit: the mean reward it has seen (its baseline), and how many rewards that is.
GRADIENT_BASELINE_FIELD = "baseline"
GRADIENT_BASELINE_COUNT_FIELD = "bc"

#: Per-arm fields are "<prefix><arm>"; what each prefix holds, and who writes it.
ARM_FIELD_PREFIXES: dict[str, str] = {
    "d:": "decisions served (the recorder's flush)",
    "e:": "requests that failed (the recorder's flush)",
    "md:": "copies for a shadow arm dropped because the mirror queue was full (the recorder's flush)",
    "x:": "decisions expected by the policy's announced allocation, in thousandths (the recorder's flush)",
    "ca:": "conversion mode: decisions per age slot, `ca:<arm>:<slot>` (the recorder's flush)",
    "cc:": "conversion mode: the age slot below which the arm's `ca:` fields are deleted (the decisions script)",
    "dl:": "conversion mode: conversions per delay bucket, `dl:<bucket>`, not per arm (feedback script)",
    "n:": "rewards counted, all time (feedback script)",
    "s:": "sum of rewards, all time (feedback script)",
    "q:": "sum of squared rewards, all time (feedback script)",
    "pn:": "discounted reward count the policy reads, as of the arm's step pt: (feedback script)",
    "ps:": "discounted reward sum the policy reads (feedback script)",
    "pq:": "discounted sum of squares the policy reads (feedback script)",
    "pt:": "the step pn:/ps:/pq: were last brought to (feedback script)",
    "h:": "gradient-bandit preference (feedback script)",
    "v:": "gradient-bandit momentum (velocity) (feedback script)",
    "phc:": "Page-Hinkley: rewards seen since the last alarm (feedback script)",
    "phm:": "Page-Hinkley: their running mean (feedback script)",
    "phr:": "Page-Hinkley: cumulative rise statistic (feedback script)",
    "phf:": "Page-Hinkley: cumulative fall statistic (feedback script)",
    "cd:": "changes detected in the arm's rewards (feedback script)",
    "ct:": "unix time of the last detected change (feedback script)",
}


def decisions_field(arm: str) -> str:
    return f"d:{arm}"


def errors_field(arm: str) -> str:
    return f"e:{arm}"


def mirror_dropped_field(arm: str) -> str:
    return f"md:{arm}"


def expected_field(arm: str) -> str:
    return f"x:{arm}"


def age_slot_field(arm: str, slot: int) -> str:
    return f"ca:{arm}:{slot}"


def age_cleaned_field(arm: str) -> str:
    return f"cc:{arm}"


def delay_field(bucket: int) -> str:
    return f"dl:{bucket}"


#: `expected_field` counts thousandths of a decision: integers, so HINCRBY adds them exactly.
EXPECTED_SCALE = 1000


def rewards_field(arm: str) -> str:
    return f"n:{arm}"


def reward_sum_field(arm: str) -> str:
    return f"s:{arm}"


def reward_sq_field(arm: str) -> str:
    return f"q:{arm}"


def policy_pulls_field(arm: str) -> str:
    return f"pn:{arm}"


def policy_sum_field(arm: str) -> str:
    return f"ps:{arm}"


def policy_sq_field(arm: str) -> str:
    return f"pq:{arm}"


def policy_step_field(arm: str) -> str:
    return f"pt:{arm}"


def preference_field(arm: str) -> str:
    return f"h:{arm}"


def changes_field(arm: str) -> str:
    return f"cd:{arm}"


def last_change_field(arm: str) -> str:
    return f"ct:{arm}"


def latency_field(arm: str, bucket: int) -> str:
    """A field of the latency histogram: "<arm>:<bucket index>" (see bandit/core/latency_buckets.py)."""
    return f"{arm}:{bucket}"


# -- fields only the series buckets have ------------------------------------------------------
#: Latency histogram entries of the bucket: this prefix + latency_field(arm, bucket).
SERIES_LATENCY_PREFIX = "l:"
#: Set by the one replica that claimed the bucket for sampling the posterior.
SAMPLED_FIELD = "sampled"
SERIES_ARM_FIELD_PREFIXES: dict[str, str] = {
    "p:": "P(best) sampled once per bucket",
    "m:": "mean sampled once per bucket",
}


def p_best_field(arm: str) -> str:
    return f"p:{arm}"


def mean_field(arm: str) -> str:
    return f"m:{arm}"
