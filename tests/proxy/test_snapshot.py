"""A snapshot's per-arm routes: worked out once per config, rebuilt when the arms or defaults change."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from bandit.core.models import Experiment
from bandit.store.counters import parse_counters
from proxy.clients.base import Origin, Timeouts
from proxy.snapshot import Snapshot

DEFAULTS = Timeouts(connect_s=2.0, read_s=30.0)
ARMS: list[dict[str, Any]] = [
    {"name": "v1", "url": "http://127.0.0.1:9001/base/"},
    {"name": "v2", "url": "https://models.example:8443", "read_timeout_s": 5.0},
    {"name": "shadow", "url": "http://127.0.0.1:9003", "shadow": True, "mirror_percent": 25},
]


def _experiment(arms: list[dict[str, Any]] = ARMS, **fields: Any) -> Experiment:
    return msgspec.convert({"name": "routes", "arms": arms, "incarnation": "i1", **fields}, Experiment)


def _snapshot(experiment: Experiment, previous: Snapshot | None = None, timeouts: Timeouts = DEFAULTS) -> Snapshot:
    counters = parse_counters({}, [arm.name for arm in experiment.arms])
    return Snapshot.build(experiment, counters, np.random.default_rng(3), timeouts, previous=previous)


def test_each_arm_gets_its_origin_timeouts_and_header_value() -> None:
    snapshot = _snapshot(_experiment())
    v1, v2, shadow = snapshot.routes
    assert v1.origin == Origin("http", "127.0.0.1", 9001, "/base") and v1.timeouts == DEFAULTS
    assert v2.origin == Origin("https", "models.example", 8443, "") and v2.timeouts == Timeouts(2.0, 5.0)
    assert (v1.header_value, snapshot.header_value) == (b"v1", b"routes")
    assert snapshot.shadows == (shadow,) and shadow.mirror_percent == 25


@pytest.mark.parametrize("status", ["paused", "promoted"])
def test_shadows_get_no_copies_unless_the_experiment_runs(status: str) -> None:
    snapshot = _snapshot(_experiment(status=status, promoted_arm="v1" if status == "promoted" else None))
    assert snapshot.shadows == ()


def test_routes_are_reused_while_the_arms_stay_the_same() -> None:
    first = _snapshot(_experiment())
    # New statistics, a new version (e.g. other policy settings): the same arms keep their routes.
    again = _snapshot(_experiment(version=2, policy={"kind": "ucb1"}), previous=first)
    assert again.routes is first.routes


@pytest.mark.parametrize(
    "changed",
    [
        [{**ARMS[0], "url": "http://127.0.0.1:9999"}, *ARMS[1:]],
        [ARMS[0], {**ARMS[1], "read_timeout_s": 9.0}, ARMS[2]],
        [ARMS[0], ARMS[1], {**ARMS[2], "shadow": False}],
        ARMS[:2],
    ],
    ids=["url", "timeout", "shadow", "arm removed"],
)
def test_routes_are_rebuilt_when_an_arm_changes(changed: list[dict[str, Any]]) -> None:
    first = _snapshot(_experiment())
    rebuilt = _snapshot(_experiment(changed, version=2), previous=first)
    assert rebuilt.routes is not first.routes
    assert [route.url for route in rebuilt.routes] == [arm["url"] for arm in changed]
    # The URLs the choice checks health by follow the routes.
    assert rebuilt.health_keys == tuple((rebuilt.name, arm["url"]) for arm in changed)
    assert rebuilt.shadows == tuple(route for route in rebuilt.routes if route.shadow)


def test_routes_are_rebuilt_when_the_default_timeouts_change() -> None:
    first = _snapshot(_experiment())
    rebuilt = _snapshot(_experiment(), previous=first, timeouts=Timeouts(1.0, 10.0))
    assert rebuilt.routes[0].timeouts == Timeouts(1.0, 10.0)
    assert rebuilt.routes[1].timeouts == Timeouts(1.0, 5.0)  # its own read timeout, the new connect one
