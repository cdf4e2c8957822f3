"""Request and response bodies of the feedback and stats APIs."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from bandit.core.models import MAX_REWARD_MAGNITUDE, Actor, Base, Status

MAX_DECISION_ID_LENGTH = 256
#: Largest batch of rewards in one request (422 past it): one Lua call counts a batch per experiment.
MAX_FEEDBACK_ITEMS = 1000

# JSON has no NaN or Infinity, and 1e999 decodes to infinity: the finite bounds refuse it, and
# keep every reward (also of an experiment without reward bounds) and its square far from overflow.
Reward = Annotated[float, Meta(ge=-MAX_REWARD_MAGNITUDE, le=MAX_REWARD_MAGNITUDE)]


class FeedbackItem(Base):
    decision: Annotated[str, Meta(min_length=1, max_length=MAX_DECISION_ID_LENGTH)]
    reward: Reward


class FeedbackRequest(Base):
    """One reward (`decision` and `reward`) or a batch of them (`items`)."""

    # For the OpenAPI schema (bandit/api/openapi.py): exactly one of these groups is required.
    __openapi_alternatives__: ClassVar[tuple[tuple[str, ...], ...]] = (("decision", "reward"), ("items",))
    decision: Annotated[str, Meta(min_length=1, max_length=MAX_DECISION_ID_LENGTH)] | UnsetType = UNSET
    reward: Reward | UnsetType = UNSET
    items: Annotated[list[FeedbackItem], Meta(min_length=1, max_length=MAX_FEEDBACK_ITEMS)] | UnsetType = UNSET

    def __post_init__(self) -> None:
        single = self.decision is not UNSET or self.reward is not UNSET
        if self.items is not UNSET:
            if single:
                raise ValueError("send either `items` or `decision` and `reward`, not both")
            return
        for field in ("decision", "reward"):
            if getattr(self, field) is UNSET:
                raise ValueError(f"Object missing required field `{field}` (or send a batch as `items`)")

    def as_items(self) -> list[FeedbackItem]:
        if self.items is not UNSET:
            return self.items
        assert self.decision is not UNSET and self.reward is not UNSET
        return [FeedbackItem(decision=self.decision, reward=self.reward)]


class RejectedItem(Base):
    index: int
    status: int
    reason: str


class FeedbackResult(Base):
    accepted: int
    duplicate: int
    rejected: int
    errors: list[RejectedItem]


class LatencySummary(Base):
    p50: float | None
    p99: float | None


class ChangeSummary(Base):
    """What the change detector found in an arm's rewards."""

    detected: int
    last_at: float | None


class GuardrailFigures(Base):
    """An arm's recent requests against its guardrails, as the acting replica last judged them."""

    breached: bool
    # False while the window holds fewer than min_decisions requests: nothing is judged yet.
    judged: bool
    window_s: int
    requests: int
    errors: int
    error_rate: float | None
    # Posterior probability that the error rate is above max_error_rate (None: not judged).
    p_error_rate_above: float | None
    answers: int
    p99_ms: float | None
    # Answers surely slower than max_p99_ms, and the probability that over 1 % are.
    slower_answers: int | None
    p_p99_above: float | None
    reason: str | None


class ArmGuardrail(Base):
    """`state` "breached" while the arm breaches or a guardrail holds it back; `serving` says how."""

    state: Literal["ok", "breached"]
    # "full", "capped" (no traffic) or "retrying" (a small share, on trial after a cap).
    serving: Literal["full", "capped", "retrying"]
    since: float | None
    until: float | None
    # None until the acting replica has judged the arm.
    figures: GuardrailFigures | None
    judged_at: float | None


class ArmStats(Base):
    name: str
    shadow: bool
    decisions: int
    # Rewarded decisions and the sum of their rewards, all time (exact, never discounted).
    rewards: int
    reward_sum: float
    # The policy's current view: mean and 95 % interval of the (discounted) rewards it weighs.
    mean: float | None
    interval: tuple[float, float] | None
    # Observations behind `mean`: equals `rewards` unless discounted or reset by a detected change.
    effective_rewards: float
    p_best: float
    expected_loss: float
    allocation: float
    latency_ms: LatencySummary
    errors: int
    healthy: bool
    # "healthy", "probation" (back from an ejection, on trial) or "ejected" (no traffic).
    health: str
    # Copies for this shadow arm dropped because the mirror queue was full.
    mirror_dropped: int
    changes: ChangeSummary
    # Decisions the allocations the policy announced should have given the arm (sample-ratio check).
    expected_decisions: float
    # None when the experiment has no guardrails, or they do not judge this arm.
    guardrail: ArmGuardrail | None = None


class StoppingStatus(Base):
    """Whether the experiment's stopping rule holds for its leader."""

    met: bool
    arm: str | None
    p_best_threshold: float
    expected_loss_threshold: float


class Totals(Base):
    decisions: int
    rewards: int
    reward_sum: float


class SampleRatioCheck(Base):
    """A chi-square test of counts against what was expected; `flagged` below p = 0.001."""

    p_value: float | None
    flagged: bool
    # None when there is too little data for the test (an expected count under 5, or one arm).
    reason: str | None


class SampleRatio(Base):
    """Did each arm get the traffic the policy announced, and do its clients report as often as the others'?"""

    decisions: SampleRatioCheck
    # Explicit feedback only: the share of decisions rewarded, compared across arms.
    feedback: SampleRatioCheck | None


class CanaryStatus(Base):
    """Where a canary stands and what its current step is waiting for."""

    step: int
    steps: list[float]
    candidate_share: float
    step_started_at: float
    decisions_in_step: int
    # "waiting" (interval or decisions short), "holding" (evidence inconclusive), "aborted", "promoted".
    state: str
    # Posterior probability that the candidate is no worse than max_reward_drop below the baseline.
    p_not_worse: float | None
    reason: str | None


class AutopilotVerdict(Base):
    """The guardrail figures the acting replica last judged, kept in Redis for every replica's stats."""

    judged_at: float
    # The settings version and incarnation judged: figures of older settings are not shown.
    version: int
    incarnation: str
    guardrails: dict[str, GuardrailFigures]


class AutopilotStatus(Base):
    """What acts on the experiment by itself, and when the acting replica last looked."""

    # Automatic actions are held after an operator rolled one back, until resumed.
    held: bool
    judged_at: float | None


class RegretEstimate(Base, kw_only=True):
    """What the traffic so far cost against always serving the current leader.

    `regret` is Σ decisions_i × (mean_leader − mean_i) over serving arms, in reward units,
    with today's estimated means; `lift` is how much higher the leader's mean is than the
    mean reward actually obtained, as a fraction of the latter (None when undefined).
    """

    leader: str | None
    regret: float
    lift: float | None


class ExperimentStats(Base):
    experiment: str
    status: Status
    policy: str
    leader: str | None
    totals: Totals
    arms: list[ArmStats]
    stopping: StoppingStatus
    generated_at: float
    sample_ratio: SampleRatio | None = None
    # The dashboard's regret and lift, in the stats too (issue 16).
    regret: RegretEstimate | None = None
    canary: CanaryStatus | None = None
    autopilot: AutopilotStatus | None = None


#: A figure behind an audited action: counts, rates, probabilities, or a name.
Figure = float | int | str | bool | None


class AuditEntry(Base):
    """One change of an experiment, by whom and why: an entry of `GET /api/experiments/{name}/audit`."""

    at: float
    actor: Actor
    # What was done: created, updated, paused, resumed, promoted, rolled_back, reset, capped,
    # retrying, restored, canary_step, canary_aborted, canary_promoted, guardrail_rollback...
    action: str
    arm: str | None = None
    reason: str = ""
    figures: dict[str, Figure] = msgspec.field(default_factory=dict)
    # The settings version the change produced.
    version: int = 0
    # The entry's id in the stream (its time in ms and a sequence), filled in when read.
    id: str = ""


class Estimate(Base):
    """An estimated mean reward with its 95 % interval."""

    value: float
    lower: float
    upper: float


class Evaluation(Base):
    """`POST /api/experiments/{name}/evaluate`: a candidate policy on the logged traffic."""

    experiment: str
    # The candidate's share of traffic per arm, as it would route now.
    candidate_allocation: dict[str, float]
    decisions: int
    # The logging policy's mean reward on these decisions, and the candidate's estimated one.
    logged_mean: Estimate
    ips: Estimate
    snips: Estimate
    doubly_robust: Estimate
    effective_sample_size: float
    # Logged decisions left out: no reward yet, a propensity of 0 (a retry), or an arm since removed.
    excluded: int
