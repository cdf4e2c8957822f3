"""The hot path: route, decide, forward, record; no Redis round trip per request.

The upstream clients live in `proxy.clients`, behind one interface.
"""

from __future__ import annotations

from proxy.app import ProxyApp
from proxy.health import ArmHealth, HealthProber
from proxy.recorder import DecisionRecorder
from proxy.registry import SnapshotRegistry
from proxy.shadow import ShadowMirror
from proxy.snapshot import ArmRoute, Snapshot
from proxy.sticky import StickyAssignments

__all__ = [
    "ArmHealth",
    "ArmRoute",
    "DecisionRecorder",
    "HealthProber",
    "ProxyApp",
    "ShadowMirror",
    "Snapshot",
    "SnapshotRegistry",
    "StickyAssignments",
]
