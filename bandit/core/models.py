"""The experiment domain model: what an experiment is, validated when decoded."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# Patterns are checked with Python's `re.search`, whose `$` also matches before a final newline:
# each one ends in `(?!\n)$` so "name\n" is refused too (in the ECMA regexes of the OpenAPI
# schema the lookahead changes nothing).

#: Experiment and arm names end up in URLs, Redis keys (inside the `{name}` hash tag) and
#: decision ids (dot-separated): ASCII letters, digits, '-' and '_' only, so no '/', '.', '{',
#: '}', ':', space, control or non-ASCII character can reach any of them.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}(?!\n)$"
NAME_RULE = "1-64 ASCII letters, digits, '-' or '_', starting with a letter or digit"
Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=NAME_PATTERN, description=NAME_RULE)]

# An upstream is contacted by the proxy for every request: only http(s), a host, an optional
# port 1-65535 and a path of printable ASCII; no credentials (they would leak into logs and
# stats), no query or fragment (the client's own are appended), no spaces or control characters.
# The host is a name whose last label is not all digits, a dotted-quad IPv4 address, or an
# [IPv6] address in hex notation (no embedded IPv4): numeric shorthands like 2130706433 for
# 127.0.0.1 are refused, and so is any address an HTTP client would only reject when connecting
# (httpx then raises InvalidURL, which is no connection error).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME = rf"(?:{_LABEL}\.)*(?=[0-9]*[A-Za-z_-]){_LABEL}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_HEX = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    [  # eight groups, or fewer with one "::" standing for the missing ones
        rf"(?:{_HEX}:){{7}}{_HEX}",
        rf"(?:{_HEX}:){{1,7}}:",
        *(rf"(?:{_HEX}:){{1,{7 - n}}}(?::{_HEX}){{{n}}}" for n in range(1, 7)),
        rf":(?:(?::{_HEX}){{1,7}}|:)",
    ]
)
_HOST = rf"(?:{_NAME}|{_OCTET}(?:\.{_OCTET}){{3}}|\[(?:{_IPV6})\])"
_PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
_PATH = r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?"
URL_PATTERN = rf"^https?://{_HOST}{_PORT}{_PATH}(?!\n)$"
URL_RULE = (
    "an http:// or https:// URL with a host (a name, an IPv4 address or an [IPv6] address), an optional "
    "port (1-65535) and path, and no credentials, query, fragment, spaces or control characters"
)
UpstreamUrl = Annotated[str, Meta(max_length=2048, pattern=URL_PATTERN, description=URL_RULE)]

HEALTH_PATH_PATTERN = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*(?!\n)$"
HEALTH_PATH_RULE = "a path starting with '/', of printable ASCII without spaces, '?' or '#'"

#: What each pattern means, for error messages: msgspec reports a mismatch by quoting the regex.
PATTERN_RULES = {NAME_PATTERN: NAME_RULE, URL_PATTERN: URL_RULE, HEALTH_PATH_PATTERN: HEALTH_PATH_RULE}

MAX_ARMS = 256
#: Largest reward (and reward bound) in absolute value: its square and sums stay far from overflow.
MAX_REWARD_MAGNITUDE = 1e15
MIN_BOUNDS_WIDTH = 1e-9
MAX_FEEDBACK_WINDOW_S = 90 * 24 * 3600
# Litestar drops a bound of 0 from the schema of an optional number; state it again.
_POSITIVE = {"extra": {"exclusive_minimum": 0}}
Weight = Annotated[float, Meta(ge=0, le=1e9)]


class Base(Struct, forbid_unknown_fields=True):
    """Shared base: unknown fields are an error, not silently dropped."""


class ArmSpec(Base):
    """One model version the experiment can route to."""

    name: Name
    url: UpstreamUrl
    weight: Weight = 1.0
    # A shadow arm gets a copy of `mirror_percent` % of the served requests; its answers are discarded.
    shadow: bool = False
    mirror_percent: Annotated[float, Meta(ge=0, le=100)] = 100.0
    # Per-arm timeouts; omitted, the service's BANDIT_UPSTREAM_CONNECT_TIMEOUT / BANDIT_UPSTREAM_TIMEOUT.
    connect_timeout_s: Annotated[float, Meta(gt=0, le=600, extra_json_schema=_POSITIVE)] | None = None
    read_timeout_s: Annotated[float, Meta(gt=0, le=3600, extra_json_schema=_POSITIVE)] | None = None
    # Path probed every few seconds (e.g. "/health"); a failing probe takes the arm out of rotation.
    health_path: (
        Annotated[str, Meta(max_length=512, pattern=HEALTH_PATH_PATTERN, description=HEALTH_PATH_RULE)] | None
    ) = None


class ChangeDetectionSettings(Base):
    """Page-Hinkley on each arm's reward stream (rewards on the policy's [0, 1] scale when bounded)."""

    # Smallest shift in an arm's mean reward worth noticing.
    delta: Annotated[float, Meta(ge=0, le=1e6)] = 0.05
    # Evidence needed for an alarm: larger means fewer false alarms and later detection.
    threshold: Annotated[float, Meta(gt=0, le=1e9)] = 30.0
    # On an alarm: only report it, forget that arm's statistics, or forget every arm's.
    action: Literal["flag", "reset_arm", "reset_all"] = "reset_all"


class LearningSettings(Base):
    """Settings every learning policy shares."""

    # Each observation makes older ones weigh `discount`× less (1 = a stationary world).
    discount: Annotated[float, Meta(gt=0, le=1)] = 1.0
    # Uniform traffic until every arm has this many rewards.
    burn_in: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    # Share of traffic every serving arm keeps whatever the policy says.
    min_share: Annotated[float, Meta(ge=0, le=1)] = 0.0
    change_detection: ChangeDetectionSettings | None = None


class EpsilonGreedySettings(LearningSettings, tag="epsilon_greedy", tag_field="kind"):
    epsilon: Annotated[float, Meta(ge=0, le=1)] = 0.1
    decay: Annotated[float, Meta(ge=0, le=1e6)] = 0.0


class ThompsonSettings(LearningSettings, tag="thompson", tag_field="kind"):
    # "auto": Beta-Bernoulli when rewards are bounded, Gaussian (Normal-Inverse-Gamma) when not.
    model: Literal["auto", "beta", "gaussian"] = "auto"


class TopTwoThompsonSettings(LearningSettings, tag="top_two_thompson", tag_field="kind"):
    # Probability of playing Thompson's leader rather than its challenger.
    beta: Annotated[float, Meta(ge=0, le=1)] = 0.5
    model: Literal["auto", "beta", "gaussian"] = "auto"


class UCB1Settings(LearningSettings, tag="ucb1", tag_field="kind"):
    c: Annotated[float, Meta(ge=0, le=1e6)] = 2.0
    # UCB1-Tuned: widths from each arm's variance; required for unbounded rewards.
    variance_aware: bool = False


class SoftmaxSettings(LearningSettings, tag="softmax", tag_field="kind"):
    temperature: Annotated[float, Meta(gt=0, le=1e6)] = 0.1
    decay: Annotated[float, Meta(ge=0, le=1e6)] = 0.0


class GradientSettings(LearningSettings, tag="gradient", tag_field="kind"):
    step_size: Annotated[float, Meta(gt=0, le=10)] = 0.1
    momentum: Annotated[float, Meta(ge=0, lt=1)] = 0.0
    baseline: bool = True


# Litestar leaves the bounds of list items out of the schema; state them for clients and fuzzers.
_WEIGHTS_SCHEMA = {"extra": {"items": {"type": "number", "minimum": 0, "maximum": 1e9}}}


class StaticSettings(Base, tag="static", tag_field="kind"):
    # One weight per arm in the order of `arms`; omitted, each arm's own `weight` is used.
    weights: Annotated[list[Weight], Meta(max_length=MAX_ARMS, extra_json_schema=_WEIGHTS_SCHEMA)] | None = None


_STEPS_SCHEMA = {"extra": {"items": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}}}


class CanarySettings(Base, tag="canary", tag_field="kind"):
    """A progressive rollout: the candidate's share of traffic climbs `steps` (percent) while it holds.

    A step is judged once `step_interval_s` has passed and the candidate served `min_decisions`
    in it: it moves on when the guardrails hold and the candidate's mean reward is probably
    (≥ 0.95) no more than `max_reward_drop` below the baseline's, aborts when it is probably
    (≥ 0.95) worse than that, and otherwise waits for evidence, for at most
    `max_step_intervals` intervals in all. At the last step (100) the candidate is promoted.
    """

    baseline: Name
    candidate: Name
    steps: Annotated[list[float], Meta(min_length=1, max_length=100, extra_json_schema=_STEPS_SCHEMA)] = msgspec.field(
        default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0]
    )
    step_interval_s: Annotated[float, Meta(ge=1, le=7 * 86_400)] = 300.0
    min_decisions: Annotated[int, Meta(ge=1, le=100_000_000)] = 500
    # In reward units.
    max_reward_drop: Annotated[float, Meta(ge=0, le=1e15)] = 0.01
    max_step_intervals: Annotated[int, Meta(ge=1, le=1000)] = 10

    def __post_init__(self) -> None:
        steps = self.steps
        if not all(0 < step <= 100 for step in steps):
            raise ValueError(f"policy.steps must be percentages in (0, 100]; got {steps}")
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise ValueError(f"policy.steps must increase from one step to the next; got {steps}")
        if steps[-1] != 100:
            raise ValueError(f"policy.steps must end at 100 (the candidate is promoted there); got {steps}")
        if self.baseline == self.candidate:
            raise ValueError("policy.candidate must be another arm than policy.baseline")


PolicySettings = (
    EpsilonGreedySettings
    | ThompsonSettings
    | TopTwoThompsonSettings
    | UCB1Settings
    | SoftmaxSettings
    | GradientSettings
    | StaticSettings
    | CanarySettings
)


# Litestar documents a fixed-length tuple by its item types alone; say that it has exactly two
# numbers and their range.
_BOUND_SCHEMA = {"type": "number", "minimum": -MAX_REWARD_MAGNITUDE, "maximum": MAX_REWARD_MAGNITUDE}
_PAIR_SCHEMA = {"extra": {"min_items": 2, "max_items": 2, "prefix_items": [_BOUND_SCHEMA, _BOUND_SCHEMA]}}


class RewardSpec(Base):
    """How rewards arrive and what values they take."""

    mode: Literal["explicit", "conversion"] = "explicit"
    window_s: Annotated[int, Meta(ge=1, le=MAX_FEEDBACK_WINDOW_S)] = 86_400
    # Rewards outside [lower, upper] are refused; null means unbounded real rewards.
    bounds: Annotated[tuple[float, float], Meta(extra_json_schema=_PAIR_SCHEMA)] | None = (0.0, 1.0)
    # λ in reward = feedback − λ · latency_s, the latency being the proxy's own measurement
    # of the decision's request: trades accuracy against speed (pruned, quantised models).
    latency_penalty: Annotated[float, Meta(ge=0, le=1e6)] = 0.0
    # Conversion mode: a decision whose window is still open counts by the chance its conversion
    # would be seen by now ("exposure", learned from the experiment's conversion delays), or as a
    # failure until it converts ("failure", what releases before it did: biased low while
    # conversions arrive).
    pending: Literal["exposure", "failure"] = "exposure"

    def __post_init__(self) -> None:
        if self.bounds is not None:
            lower, upper = self.bounds
            # Rewards are divided by the width to reach the policy's [0, 1] scale: a vanishing width
            # would turn a latency-penalised reward into infinity on that scale.
            if not all(abs(x) <= MAX_REWARD_MAGNITUDE for x in self.bounds) or not upper - lower >= MIN_BOUNDS_WIDTH:
                raise ValueError(
                    # No " - " in the message: Litestar cuts msgspec's messages at the first one.
                    f"reward.bounds must be [lower, upper] with lower < upper, upper at least {MIN_BOUNDS_WIDTH:g} "
                    f"above lower, and both within ±{MAX_REWARD_MAGNITUDE:g}; got {list(self.bounds)}"
                )


class StoppingRule(Base):
    """When an experiment may stop: its leader is probably best and choosing it costs little."""

    p_best: Annotated[float, Meta(gt=0, le=1)] = 0.95
    # Expected reward given up by choosing the leader, in reward units.
    expected_loss: Annotated[float, Meta(ge=0, le=1e15)] = 0.001
    # "report": the rule is shown in stats; "promote": the leader is promoted once the rule
    # holds and the guardrails hold for it.
    action: Literal["report", "promote"] = "report"


class DecisionLogSettings(Base):
    """Keep each decision (time, arm, propensity, unit, settings version) and its reward, for export
    and off-policy evaluation: a Redis stream trimmed to `max_entries` and to `max_age_s`."""

    # The share of decisions logged (rewards are logged for the decisions logged).
    sample: Annotated[float, Meta(gt=0, le=1, extra_json_schema=_POSITIVE)] = 1.0
    max_entries: Annotated[int, Meta(ge=100, le=10_000_000)] = 100_000
    max_age_s: Annotated[int, Meta(ge=60, le=MAX_FEEDBACK_WINDOW_S)] = 7 * 86_400


class GuardrailSettings(Base):
    """Service limits each guarded arm must keep, judged on every replica's counts of the last `window_s`.

    An arm breaches `max_error_rate` when the posterior probability (Beta, uniform prior) that
    its error rate is above the limit reaches 0.95, and `max_p99_ms` when the probability that
    more than 1 % of its answers are slower than the limit does; only once it has
    `min_decisions` requests in the window, so the prior alone never decides.
    """

    max_error_rate: Annotated[float, Meta(gt=0, lt=1, extra_json_schema=_POSITIVE)] | None = None
    max_p99_ms: Annotated[float, Meta(gt=0, le=600_000, extra_json_schema=_POSITIVE)] | None = None
    min_decisions: Annotated[int, Meta(ge=10, le=100_000_000)] = 200
    window_s: Annotated[int, Meta(ge=5, le=3600)] = 60
    # "cap": a breaching arm gets no traffic, then `retry_share` after `cooldown_s` (doubling on
    # each relapse), and its whole share back once it holds; "rollback": all traffic to `control`.
    action: Literal["cap", "rollback"] = "cap"
    control: Name | None = None
    # The arms judged; omitted, every serving arm.
    arms: Annotated[list[Name], Meta(min_length=1, max_length=MAX_ARMS)] | None = None
    cooldown_s: Annotated[float, Meta(ge=1, le=86_400)] = 60.0
    retry_share: Annotated[float, Meta(gt=0, le=0.5, extra_json_schema=_POSITIVE)] = 0.05

    def __post_init__(self) -> None:
        if self.max_error_rate is None and self.max_p99_ms is None:
            raise ValueError("guardrails need max_error_rate, max_p99_ms or both")


class ExperimentSpec(Base):
    """What a user asks for when creating an experiment."""

    name: Name
    arms: Annotated[list[ArmSpec], Meta(min_length=1, max_length=MAX_ARMS)]
    policy: PolicySettings = msgspec.field(default_factory=ThompsonSettings)
    reward: RewardSpec = msgspec.field(default_factory=RewardSpec)
    stopping: StoppingRule = msgspec.field(default_factory=StoppingRule)
    guardrails: GuardrailSettings | None = None
    log: DecisionLogSettings | None = None

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
        if isinstance(self.policy, LearningSettings):
            check_learning_settings(self.policy, self.reward, sum(not arm.shadow for arm in self.arms))
        if isinstance(self.policy, CanarySettings):
            check_canary_settings(self.policy, self.arms)
        if self.guardrails is not None:
            check_guardrail_settings(self.guardrails, self.arms)

    def static_weights(self) -> list[float]:
        """Weights of a static split, one per arm."""
        if isinstance(self.policy, StaticSettings) and self.policy.weights is not None:
            return list(self.policy.weights)
        return [arm.weight for arm in self.arms]

    def arm(self, name: str) -> ArmSpec | None:
        return next((arm for arm in self.arms if arm.name == name), None)

    def control_arm(self) -> str:
        """The arm a rollback returns to: the canary's baseline, the guardrails' control, or the first serving arm."""
        if isinstance(self.policy, CanarySettings):
            return self.policy.baseline
        if self.guardrails is not None and self.guardrails.control is not None:
            return self.guardrails.control
        return next(arm.name for arm in self.arms if not arm.shadow)

    def guarded_arms(self) -> list[str]:
        """The arms the guardrails judge (none without guardrails)."""
        if self.guardrails is None:
            return []
        if self.guardrails.arms is not None:
            return list(self.guardrails.arms)
        return [arm.name for arm in self.arms if not arm.shadow]


def _serving_arm(arms: list[ArmSpec], name: str, field: str) -> None:
    arm = next((arm for arm in arms if arm.name == name), None)
    if arm is None:
        raise ValueError(f"{field} {name!r} is not an arm of the experiment")
    if arm.shadow:
        raise ValueError(f"{field} {name!r} is a shadow arm: it serves no traffic")


def check_canary_settings(policy: CanarySettings, arms: list[ArmSpec]) -> None:
    _serving_arm(arms, policy.baseline, "policy.baseline")
    _serving_arm(arms, policy.candidate, "policy.candidate")
    others = [arm.name for arm in arms if not arm.shadow and arm.name not in (policy.baseline, policy.candidate)]
    if others:
        raise ValueError(
            f"policy kind canary routes between its baseline and candidate only: arms {others} must be shadow arms"
        )


def check_guardrail_settings(guardrails: GuardrailSettings, arms: list[ArmSpec]) -> None:
    for name in guardrails.arms or []:
        _serving_arm(arms, name, "guardrails.arms:")
    if guardrails.arms is not None and len(set(guardrails.arms)) != len(guardrails.arms):
        raise ValueError(f"guardrails.arms names an arm twice: {guardrails.arms}")
    if guardrails.control is not None:
        _serving_arm(arms, guardrails.control, "guardrails.control")


def check_learning_settings(policy: LearningSettings, reward: RewardSpec, serving_arms: int) -> None:
    """Refuse combinations of settings that cannot work together, naming the fields."""
    if policy.min_share * serving_arms > 1.0:
        raise ValueError(
            f"policy.min_share {policy.min_share} for {serving_arms} serving arms exceeds all traffic "
            f"(at most {1.0 / serving_arms:.4g})"
        )
    if isinstance(policy, GradientSettings) and policy.discount != 1.0:
        raise ValueError(
            "policy.discount does not apply to the gradient bandit: its constant step_size already tracks change"
        )
    unbounded = reward.bounds is None or reward.latency_penalty > 0
    if isinstance(policy, UCB1Settings) and unbounded and not policy.variance_aware:
        raise ValueError(
            "policy kind ucb1 needs rewards in known bounds (reward.bounds set and no reward.latency_penalty), "
            "or policy.variance_aware: true"
        )
    model = getattr(policy, "model", "auto")
    if model == "beta" and unbounded:
        raise ValueError(
            "policy.model beta needs rewards in [lower, upper]: not with reward.bounds null or a "
            "reward.latency_penalty (use model auto or gaussian)"
        )
    if reward.mode == "conversion" and reward.latency_penalty > 0:
        raise ValueError(
            "reward.latency_penalty does not work with reward.mode conversion: decisions without a "
            "conversion are never reported, so their latency could not be charged"
        )
    if isinstance(policy, GradientSettings) and policy.change_detection and policy.change_detection.action != "flag":
        raise ValueError(
            "policy.change_detection.action must be flag for the gradient policy: it routes by learned "
            "preferences, which forgetting the reward statistics would not change"
        )
    if policy.discount < 1.0 and policy.burn_in > 0:
        # Discounted counts level off near 1/(K(1 − γ)) per arm: a burn-in above that never ends.
        ceiling = 1.0 / (serving_arms * (1.0 - policy.discount))
        if policy.burn_in >= 0.5 * ceiling:
            raise ValueError(
                f"policy.burn_in {policy.burn_in} can never be reached with policy.discount {policy.discount} "
                f"and {serving_arms} serving arms (discounted counts level off near {ceiling:.0f}); "
                f"use at most {int(0.5 * ceiling)}"
            )
    tracking = policy.discount != 1.0 or policy.change_detection is not None or isinstance(policy, GradientSettings)
    if reward.mode == "conversion" and tracking:
        raise ValueError(
            "reward.mode conversion does not support policy.discount, policy.change_detection or the gradient "
            "policy: conversions arrive after their decisions, so the order of observations is unknown"
        )


Status = Literal["running", "paused", "promoted", "aborted"]
#: Who changed an experiment: an operator through the API, or one of the automatic actors.
Actor = Literal["operator", "guardrail", "canary", "stopping"]


class ArmCap(Base):
    """An arm the guardrails took traffic from: `capped` (none) until `until`, then `retrying` at a small share."""

    state: Literal["capped", "retrying"]
    since: float
    until: float
    # This cap's cool-down; the next relapse doubles it.
    cooldown_s: float
    reason: str


class CanaryProgress(Base):
    """Where a canary stands: the step it is at, since when, and the candidate's requests then."""

    step: int = 0
    step_started_at: float = 0.0
    # The candidate's decisions when the step began (counters are cumulative).
    decisions_at_start: int = 0


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
    # What the automatic actors hold in place: capped arms, the canary's step.
    capped: dict[str, ArmCap] = msgspec.field(default_factory=dict)
    canary: CanaryProgress | None = None
    # Per arm, when its guardrail window last restarted (a restore after a cap): older counts are
    # not held against it again.
    judged_since: dict[str, float] = msgspec.field(default_factory=dict)
    # True once an operator rolled back an automatic change: nothing automatic happens until resumed.
    autopilot_held: bool = False
    changed_by: Actor = "operator"

    def pinned_arm(self) -> str | None:
        """The arm that takes all traffic, or None while the policy decides."""
        if self.status == "promoted":
            return self.promoted_arm
        if self.status in ("paused", "aborted"):
            # Back to the control arm (a canary's baseline, the guardrails' control, or the first
            # serving arm), no exploration.
            return self.control_arm()
        return None

    def automated(self) -> bool:
        """Does anything act on this experiment by itself (guardrails, a canary, auto-promote)?"""
        return (
            self.guardrails is not None or isinstance(self.policy, CanarySettings) or self.stopping.action == "promote"
        )


class ExperimentPatch(Base):
    """Fields of an experiment a PATCH may replace; omitted ones are kept."""

    arms: Annotated[list[ArmSpec], Meta(min_length=1, max_length=MAX_ARMS)] | UnsetType = UNSET
    policy: PolicySettings | UnsetType = UNSET
    reward: RewardSpec | UnsetType = UNSET
    stopping: StoppingRule | UnsetType = UNSET
    # null removes the guardrails.
    guardrails: GuardrailSettings | UnsetType | None = UNSET
    # null stops the decision log (what it holds expires by its own bounds).
    log: DecisionLogSettings | UnsetType | None = UNSET


class PromoteRequest(Base):
    """Which arm to promote; omitted on a two-arm blue/green split, the idle colour."""

    arm: Name | None = None
