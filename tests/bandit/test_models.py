from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bandit.models import ExperimentSpec, StaticSettings, ThompsonSettings
from bandit.payloads import FeedbackRequest

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
