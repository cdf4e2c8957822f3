"""Request and response bodies of the feedback and stats APIs."""

from __future__ import annotations

from typing import Annotated, ClassVar

from msgspec import UNSET, Meta, UnsetType

from bandit.core.models import MAX_REWARD_MAGNITUDE, Base, Status

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


class ExperimentStats(Base):
    experiment: str
    status: Status
    policy: str
    leader: str | None
    totals: Totals
    arms: list[ArmStats]
    stopping: StoppingStatus
    generated_at: float
