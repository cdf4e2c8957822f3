"""The ejection rules the bad-upstream scenario relies on, step by step on a hand-driven clock."""

from __future__ import annotations

from proxy.health import ArmHealth

URL = "http://127.0.0.1:9"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ejected_after_failures(connection_failed: bool) -> tuple[ArmHealth, Clock]:
    clock = Clock()
    health = ArmHealth(failures_to_eject=3, first_backoff_s=2.0, clock=clock)
    for _ in range(3):
        health.sending(URL)
        health.observe(URL, failed=True, connection_failed=connection_failed)
    assert health.state(URL) == "ejected" and not health.is_healthy(URL)
    return health, clock


def test_a_passing_probe_readmits_an_upstream_that_only_refused_connections() -> None:
    health, _ = ejected_after_failures(connection_failed=True)
    health.probed(URL, ok=True)
    assert health.is_healthy(URL) and health.state(URL) == "healthy"


def test_a_passing_probe_does_not_readmit_an_upstream_that_answered_badly() -> None:
    health, clock = ejected_after_failures(connection_failed=False)
    health.probed(URL, ok=False)
    health.probed(URL, ok=True)
    assert health.state(URL) == "ejected"
    # The back-off over, one trial at a time goes through; its failure ejects for twice as long.
    clock.now += 2.0
    assert health.state(URL) == "probation" and health.is_healthy(URL)
    health.sending(URL)
    assert not health.is_healthy(URL)
    health.observe(URL, failed=True)
    clock.now += 3.9
    assert health.state(URL) == "ejected"
    clock.now += 0.1
    health.sending(URL)
    assert not health.is_healthy(URL)
    # A successful trial clears the record.
    health.observe(URL, failed=False)
    assert health.is_healthy(URL) and health.state(URL) == "healthy"


def test_a_failing_probe_keeps_an_upstream_out_past_its_back_off() -> None:
    health, clock = ejected_after_failures(connection_failed=True)
    health.probed(URL, ok=False)
    clock.now += 60.0
    assert not health.is_healthy(URL)
    health.probed(URL, ok=True)
    assert health.is_healthy(URL)
