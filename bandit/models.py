"""The experiment domain model: what an experiment is, validated when decoded."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

#: Experiment and arm names end up in URLs, Redis keys and decision ids: keep them plain.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Name = Annotated[
    str,
    Meta(pattern=NAME_PATTERN, description="1-64 letters, digits, '-' or '_', starting with a letter or digit"),
]
UpstreamUrl = Annotated[
    str,
    Meta(
        pattern=r"^https?://[^/?#@\s]+(/[^?#\s]*)?$", max_length=2048, description="http(s) base URL of a model server"
    ),
]
MAX_ARMS = 64
MAX_FEEDBACK_WINDOW_S = 90 * 24 * 3600


class Base(Struct, forbid_unknown_fields=True):
    """Shared base: unknown fields are an error, not silently dropped."""


class ArmSpec(Base):
    """One model version the experiment can route to."""

    name: Name
    url: UpstreamUrl
    weight: Annotated[float, Meta(ge=0, le=1e9)] = 1.0
    shadow: bool = False


class EpsilonGreedySettings(Base, tag="epsilon_greedy", tag_field="kind"):
    epsilon: Annotated[float, Meta(ge=0, le=1)] = 0.1
    decay: Annotated[float, Meta(ge=0, le=1e6)] = 0.0


class ThompsonSettings(Base, tag="thompson", tag_field="kind"):
    # "auto": Beta-Bernoulli when rewards are bounded, Gaussian when they are not.
    model: Literal["auto", "beta", "gaussian"] = "auto"


class StaticSettings(Base, tag="static", tag_field="kind"):
    # One weight per arm in the order of `arms`; omitted, each arm's own `weight` is used.
    weights: list[Annotated[float, Meta(ge=0, le=1e9)]] | None = None


PolicySettings = EpsilonGreedySettings | ThompsonSettings | StaticSettings


class RewardSpec(Base):
    """How rewards arrive and what values they take."""

    mode: Literal["explicit", "conversion"] = "explicit"
    window_s: Annotated[int, Meta(ge=1, le=MAX_FEEDBACK_WINDOW_S)] = 86_400
    # Rewards outside [lower, upper] are refused; null means unbounded real rewards.
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.bounds is not None:
            lower, upper = self.bounds
            if not lower < upper or not all(abs(x) < 1e15 for x in self.bounds):
                raise ValueError(f"reward.bounds must be finite with lower < upper, got {list(self.bounds)}")


class ExperimentSpec(Base):
    """What a user asks for when creating an experiment."""

    name: Name
    arms: Annotated[list[ArmSpec], Meta(min_length=1, max_length=MAX_ARMS)]
    policy: PolicySettings = msgspec.field(default_factory=ThompsonSettings)
    reward: RewardSpec = msgspec.field(default_factory=RewardSpec)

    def __post_init__(self) -> None:
        names = [arm.name for arm in self.arms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"arm names must be unique, repeated: {duplicates}")
        if all(arm.shadow for arm in self.arms):
            raise ValueError("at least one arm must serve traffic (shadow: false)")
        if isinstance(self.policy, StaticSettings):
            weights = self.static_weights()
            if len(weights) != len(self.arms):
                raise ValueError(f"policy.weights has {len(weights)} entries for {len(self.arms)} arms")
            if sum(w for w, arm in zip(weights, self.arms, strict=True) if not arm.shadow) <= 0:
                raise ValueError("static weights of the serving arms must not all be 0")

    def static_weights(self) -> list[float]:
        """Weights of a static split, one per arm."""
        if isinstance(self.policy, StaticSettings) and self.policy.weights is not None:
            return list(self.policy.weights)
        return [arm.weight for arm in self.arms]

    def arm(self, name: str) -> ArmSpec | None:
        return next((arm for arm in self.arms if arm.name == name), None)


Status = Literal["running", "paused", "promoted"]


class Experiment(ExperimentSpec, kw_only=True):
    """An experiment as stored: the spec plus its lifecycle state."""

    status: Status = "running"
    # While promoted (or paused), every request goes to this arm.
    promoted_arm: str | None = None
    # Changes on reset, so feedback for decisions made before a reset is not counted after it.
    incarnation: str = ""
    version: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0

    def pinned_arm(self) -> str | None:
        """The arm that takes all traffic, or None while the policy decides."""
        if self.status == "promoted":
            return self.promoted_arm
        if self.status == "paused":
            # Paused: back to the control (first serving) arm, no exploration.
            return next(arm.name for arm in self.arms if not arm.shadow)
        return None


class ExperimentPatch(Base):
    """Fields of an experiment a PATCH may replace; omitted ones are kept."""

    arms: Annotated[list[ArmSpec], Meta(min_length=1, max_length=MAX_ARMS)] | UnsetType = UNSET
    policy: PolicySettings | UnsetType = UNSET
    reward: RewardSpec | UnsetType = UNSET


class PromoteRequest(Base):
    """Which arm to promote; omitted on a two-arm blue/green split, the idle colour."""

    arm: Name | None = None
