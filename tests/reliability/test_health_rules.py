"""The ejection rules the bad-upstream scenario relies on, step by step on a hand-driven clock:
an arm that refuses connections, one that answers only 5xx, one that turns bad under load."""

from __future__ import annotations

from proxy.health import ERROR_WINDOW_S, MIN_REQUESTS_IN_WINDOW, ArmHealth, HealthKey

URL = "http://127.0.0.1:9"
KEY: HealthKey = ("scenario", URL)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ejected_after_failures(connection_failed: bool) -> tuple[ArmHealth, Clock]:
    """Refused connections eject after three in a row; 5xx answers once there are enough to judge."""
    clock = Clock()
    health = ArmHealth(failures_to_eject=3, first_backoff_s=2.0, clock=clock)
    for _ in range(3 if connection_failed else MIN_REQUESTS_IN_WINDOW):
        health.sending(KEY)
        health.observe(KEY, failed=True, connection_failed=connection_failed)
    assert health.state(KEY) == "ejected" and not health.is_healthy(KEY)
    return health, clock


def test_an_arm_answering_only_5xx_is_ejected_once_it_has_had_enough_requests() -> None:
    clock = Clock()
    health = ArmHealth(clock=clock)
    for _ in range(MIN_REQUESTS_IN_WINDOW - 1):
        health.observe(KEY, failed=True)
    assert health.state(KEY) == "healthy"
    health.observe(KEY, failed=True)
    assert health.state(KEY) == "ejected"


def test_an_arm_that_turns_to_5xx_under_load_is_ejected_within_half_a_window() -> None:
    # 100 requests/s served well for the whole window, then nothing but 5xx.
    clock = Clock()
    health = ArmHealth(clock=clock)
    for _ in range(int(ERROR_WINDOW_S * 100)):
        health.observe(KEY, failed=False)
        clock.now += 0.01
    turned_at = clock.now
    while health.state(KEY) == "healthy":
        health.observe(KEY, failed=True)
        clock.now += 0.01
    assert clock.now - turned_at <= ERROR_WINDOW_S / 2 + 0.01


def test_a_passing_probe_readmits_an_upstream_that_only_refused_connections() -> None:
    health, _ = ejected_after_failures(connection_failed=True)
    health.probed(URL, ok=True)
    assert health.is_healthy(KEY) and health.state(KEY) == "healthy"


def test_a_passing_probe_does_not_readmit_an_upstream_that_answered_badly() -> None:
    health, clock = ejected_after_failures(connection_failed=False)
    health.probed(URL, ok=False)
    health.probed(URL, ok=True)
    assert health.state(KEY) == "ejected"
    # The back-off over, one trial at a time goes through; its failure ejects for twice as long.
    clock.now += 2.0
    assert health.state(KEY) == "probation" and health.is_healthy(KEY)
    health.sending(KEY)
    assert not health.is_healthy(KEY)
    health.observe(KEY, failed=True)
    clock.now += 3.5
    assert health.state(KEY) == "ejected"
    clock.now += 0.5
    health.sending(KEY)
    assert not health.is_healthy(KEY)
    # A successful trial clears the record.
    health.observe(KEY, failed=False)
    assert health.is_healthy(KEY) and health.state(KEY) == "healthy"


def test_a_failing_probe_keeps_an_upstream_out_past_its_back_off() -> None:
    health, clock = ejected_after_failures(connection_failed=True)
    health.probed(URL, ok=False)
    clock.now += 60.0
    assert not health.is_healthy(KEY)
    health.probed(URL, ok=True)
    assert health.is_healthy(KEY)
