from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bandit.core.models import ExperimentSpec, StaticSettings, ThompsonSettings
from bandit.core.payloads import FeedbackRequest

ARM = {"name": "a", "url": "http://127.0.0.1:9000"}


def test_defaults_are_thompson_on_bounded_explicit_rewards() -> None:
    spec = msgspec.convert({"name": "e", "arms": [ARM]}, ExperimentSpec)
    assert isinstance(spec.policy, ThompsonSettings)
    assert spec.reward.mode == "explicit" and spec.reward.bounds == (0.0, 1.0)


def test_policy_kind_selects_the_settings_type() -> None:
    spec = msgspec.convert(
        {"name": "e", "arms": [ARM, {**ARM, "name": "b"}], "policy": {"kind": "static", "weights": [100, 0]}},
        ExperimentSpec,
    )
    assert isinstance(spec.policy, StaticSettings) and spec.static_weights() == [100, 0]


def test_every_policy_kind_decodes() -> None:
    kinds = ["epsilon_greedy", "thompson", "top_two_thompson", "ucb1", "softmax", "gradient", "static"]
    for kind in kinds:
        spec = msgspec.convert({"name": "e", "arms": [ARM], "policy": {"kind": kind}}, ExperimentSpec)
        assert type(spec.policy).__struct_config__.tag == kind


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"arms": [ARM]}, "missing required field `name`"),
        ({"name": "", "arms": [ARM]}, r"at `\$.name`"),
        ({"name": "a.b", "arms": [ARM]}, r"at `\$.name`"),
        ({"name": "a/b", "arms": [ARM]}, r"at `\$.name`"),
        ({"name": "e", "arms": []}, r"length >= 1 - at `\$.arms`"),
        ({"name": "e", "arms": [{**ARM, "url": "ftp://x"}]}, r"at `\$.arms\[0\].url`"),
        ({"name": "e", "arms": [{**ARM, "url": "http://evil@host"}]}, r"at `\$.arms\[0\].url`"),
        ({"name": "e", "arms": [{**ARM, "weight": -1}]}, r">= 0.0 - at `\$.arms\[0\].weight`"),
        ({"name": "e", "arms": [ARM, ARM]}, "arm names must be unique"),
        ({"name": "e", "arms": [{**ARM, "shadow": True}]}, "at least one arm must serve"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "epsilon_greedy", "epsilon": 1.5}}, r"policy.epsilon"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "magic"}}, r"Invalid value 'magic' - at `\$.policy.kind`"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "static", "weights": [1, 2]}}, "2 entries for 1 arms"),
        ({"name": "e", "arms": [ARM], "reward": {"mode": "sometimes"}}, r"at `\$.reward.mode`"),
        ({"name": "e", "arms": [ARM], "reward": {"window_s": 0}}, r"at `\$.reward.window_s`"),
        ({"name": "e", "arms": [ARM], "reward": {"bounds": [1, 0]}}, "lower < upper"),
        ({"name": "e", "arms": [ARM], "colour": "red"}, "unknown field `colour`"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "epsilon_greedy", "epsilon": -0.1}}, r"policy.epsilon"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "thompson", "discount": 0}}, r"policy.discount"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "thompson", "discount": 1.5}}, r"policy.discount"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "thompson", "burn_in": -1}}, r"policy.burn_in"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "ucb1", "c": -1}}, r"policy.c"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "softmax", "temperature": 0}}, r"policy.temperature"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "gradient", "step_size": 0}}, r"policy.step_size"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "gradient", "momentum": 1}}, r"policy.momentum"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "top_two_thompson", "beta": 2}}, r"policy.beta"),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "thompson", "model": "poisson"}}, r"policy.model"),
        (
            {"name": "e", "arms": [ARM], "policy": {"kind": "thompson", "change_detection": {"threshold": 0}}},
            r"policy.change_detection.threshold",
        ),
        (
            {"name": "e", "arms": [ARM], "policy": {"kind": "thompson", "change_detection": {"action": "panic"}}},
            r"policy.change_detection.action",
        ),
        (
            {"name": "e", "arms": [ARM, {**ARM, "name": "b"}], "policy": {"kind": "thompson", "min_share": 0.6}},
            "policy.min_share 0.6 for 2 serving arms exceeds all traffic",
        ),
        ({"name": "e", "arms": [ARM], "policy": {"kind": "gradient", "discount": 0.9}}, "policy.discount does not"),
        (
            {"name": "e", "arms": [ARM], "policy": {"kind": "ucb1"}, "reward": {"bounds": None}},
            "ucb1 needs rewards in known bounds",
        ),
        (
            {
                "name": "e",
                "arms": [ARM],
                "policy": {"kind": "thompson", "discount": 0.99},
                "reward": {"mode": "conversion"},
            },
            "reward.mode conversion does not support policy.discount",
        ),
        ({"name": "e", "arms": [ARM], "reward": {"latency_penalty": -0.01}}, r"at `\$.reward.latency_penalty`"),
        (
            {"name": "e", "arms": [ARM], "policy": {"kind": "ucb1"}, "reward": {"latency_penalty": 0.5}},
            "ucb1 needs rewards in known bounds",
        ),
        (
            {"name": "e", "arms": [ARM], "policy": {"kind": "thompson", "model": "beta"}, "reward": {"bounds": None}},
            "policy.model beta needs rewards in",
        ),
        (
            {"name": "e", "arms": [ARM], "reward": {"mode": "conversion", "latency_penalty": 1}},
            "reward.latency_penalty does not work with reward.mode conversion",
        ),
        (
            {"name": "e", "arms": [ARM], "policy": {"kind": "gradient", "change_detection": {}}},
            "policy.change_detection.action must be flag for the gradient policy",
        ),
        (
            {
                "name": "e",
                "arms": [ARM, {**ARM, "name": "b"}],
                "policy": {"kind": "thompson", "discount": 0.99, "burn_in": 30},
            },
            "policy.burn_in 30 can never be reached",
        ),
        ({"name": "e", "arms": [ARM], "stopping": {"p_best": 0}}, r"at `\$.stopping.p_best`"),
        ({"name": "e", "arms": [ARM], "stopping": {"expected_loss": -1}}, r"at `\$.stopping.expected_loss`"),
    ],
)
def test_invalid_experiments_are_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(body, ExperimentSpec)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reward": 1}, "missing required field `decision`"),
        ({"decision": "d"}, "missing required field `reward`"),
        ({"decision": "d", "reward": "1"}, r"Expected `float`, got `str` - at `\$.reward`"),
        ({"decision": "d", "reward": 1e300}, r"at `\$.reward`"),
        ({"items": {}}, r"Expected `array`, got `object` - at `\$.items`"),
        ({"items": []}, r"at `\$.items`"),
        ({"items": [{"decision": "d"}]}, r"missing required field `reward` - at `\$.items\[0\]`"),
        ({"items": [{"decision": "d", "reward": 1}], "decision": "d"}, "either `items` or `decision`"),
    ],
)
def test_invalid_feedback_is_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(body, FeedbackRequest)
