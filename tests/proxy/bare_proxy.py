"""A ProxyApp with no service around it (no Redis, no background loops), for tests in process."""

from __future__ import annotations

from typing import Any

from bandit.core.decision_ids import DecisionSigner
from proxy.admission import ArmSlots
from proxy.app import ProxyApp
from proxy.health import ArmHealth
from proxy.recorder import DecisionRecorder
from proxy.request_body import BodyLimits, BufferBudget
from proxy.sticky import StickyAssignments
from proxy.wait_watch import WaitWatch

LIMITS = BodyLimits(max_bytes=1 << 20, buffer_bytes=1 << 16, idle_s=10.0, total_s=60.0)


def bare_proxy(registry: Any, client: Any, sticky: StickyAssignments | None = None) -> ProxyApp:
    """`registry` and `client` as the test needs (a fake registry, an upstream client or None); decisions
    are counted in memory and never flushed, and no sweep times the waits."""
    return ProxyApp(
        registry,
        DecisionRecorder(None, 1.0),  # type: ignore[arg-type]  # never flushed here
        client,
        DecisionSigner([b"k"]),
        ArmHealth(),
        LIMITS,
        ArmSlots(256, 16),
        WaitWatch(),
        BufferBudget(1 << 28),
        sticky=sticky,
    )
