"""Request and response bodies of the feedback and stats APIs."""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, UnsetType

from bandit.models import Base, Status

MAX_DECISION_ID_LENGTH = 256
MAX_FEEDBACK_ITEMS = 1000

# JSON has no NaN; the bounds also keep 1e999 (infinity) out.
Reward = Annotated[float, Meta(ge=-1e15, le=1e15)]


class FeedbackItem(Base):
    decision: Annotated[str, Meta(min_length=1, max_length=MAX_DECISION_ID_LENGTH)]
    reward: Reward


class FeedbackRequest(Base):
    """One reward (`decision` and `reward`) or a batch of them (`items`)."""

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


class ArmStats(Base):
    name: str
    shadow: bool
    decisions: int
    rewards: int
    reward_sum: float
    mean: float | None
    interval: tuple[float, float] | None
    p_best: float
    expected_loss: float
    allocation: float
    latency_ms: LatencySummary
    errors: int
    healthy: bool


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
    generated_at: float
