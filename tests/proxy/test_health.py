"""Passive health rules one by one, on a hand-driven clock: no servers, no event loop."""

from __future__ import annotations

from proxy.health import (
    ERROR_WINDOW_S,
    FIRST_BACKOFF_S,
    MAX_BACKOFF_S,
    MAX_RECORDS,
    MIN_REQUESTS_IN_WINDOW,
    TRIAL_TIMEOUT_S,
    ArmHealth,
    HealthKey,
)

URL = "http://127.0.0.1:9"
A: HealthKey = ("a", URL)
B: HealthKey = ("b", URL)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def health_on_a_clock(max_records: int = MAX_RECORDS) -> tuple[ArmHealth, Clock]:
    clock = Clock()
    return ArmHealth(max_records=max_records, clock=clock), clock


def answer(health: ArmHealth, key: HealthKey, failed: bool, times: int = 1) -> None:
    for _ in range(times):
        health.sending(key)
        health.observe(key, failed=failed)


def refuse(health: ArmHealth, key: HealthKey, times: int = 3) -> None:
    for _ in range(times):
        health.sending(key)
        health.observe(key, failed=True, connection_failed=True)


def eject_by_error_rate(health: ArmHealth, key: HealthKey) -> None:
    answer(health, key, failed=True, times=MIN_REQUESTS_IN_WINDOW)
    assert health.state(key) == "ejected"


def test_three_crafted_5xx_do_not_eject_with_or_without_other_traffic() -> None:
    health, _ = health_on_a_clock()
    answer(health, A, failed=True, times=3)
    assert health.is_healthy(A) and health.state(A) == "healthy"
    answer(health, B, failed=False, times=5)
    answer(health, B, failed=True, times=3)
    assert health.is_healthy(B) and health.state(B) == "healthy"


def test_nineteen_5xx_alone_are_too_few_to_judge_and_the_twentieth_ejects() -> None:
    health, _ = health_on_a_clock()
    answer(health, A, failed=True, times=MIN_REQUESTS_IN_WINDOW - 1)
    assert health.is_healthy(A)
    answer(health, A, failed=True)
    assert not health.is_healthy(A) and health.state(A) == "ejected"


def test_an_arm_failing_half_of_twenty_answers_is_ejected_and_a_little_less_is_not() -> None:
    health, _ = health_on_a_clock()
    for _ in range(10):
        answer(health, A, failed=False)
        answer(health, A, failed=True)
    assert health.state(A) == "ejected"

    answer(health, B, failed=False, times=11)
    answer(health, B, failed=True, times=9)
    assert health.state(B) == "healthy"


def test_the_successes_in_the_window_must_be_outweighed() -> None:
    health, _ = health_on_a_clock()
    answer(health, A, failed=False, times=100)
    answer(health, A, failed=True, times=99)
    assert health.state(A) == "healthy"
    answer(health, A, failed=True)
    assert health.state(A) == "ejected"


def serve_for(
    health: ArmHealth, clock: Clock, key: HealthKey, seconds: float, per_s: int, failed_share: float
) -> float:
    """`per_s` answers a second for `seconds`, `failed_share` of them failed, spread evenly; the
    seconds until `key` was ejected (inf if it never was)."""
    started = clock.now
    owed = 0.0
    for _ in range(int(seconds * per_s)):
        clock.now += 1 / per_s
        owed += failed_share
        failed = owed >= 1.0
        owed -= failed
        answer(health, key, failed=failed)
        if health.state(key) == "ejected":
            return clock.now - started
    return float("inf")


def test_an_arm_that_turns_to_failing_everything_is_ejected_within_a_second() -> None:
    # A full window of good answers does not have to be outweighed first: the newest seconds alone tell.
    health, clock = health_on_a_clock()
    assert serve_for(health, clock, A, ERROR_WINDOW_S, per_s=50, failed_share=0.0) == float("inf")
    assert serve_for(health, clock, A, ERROR_WINDOW_S, per_s=50, failed_share=1.0) <= 1.0


def test_the_fast_rule_wants_nearly_every_newest_answer_failed() -> None:
    # Four in five failing: a client crafting failures must outnumber honest traffic nine to one to
    # use the fast rule; at four to one it waits for the whole window's rate, as an arm failing so does.
    health, clock = health_on_a_clock()
    serve_for(health, clock, A, ERROR_WINDOW_S, per_s=50, failed_share=0.0)
    took = serve_for(health, clock, A, ERROR_WINDOW_S, per_s=50, failed_share=0.8)
    assert 3.0 < took <= ERROR_WINDOW_S


def test_errors_older_than_the_window_do_not_count() -> None:
    health, clock = health_on_a_clock()
    answer(health, A, failed=True, times=MIN_REQUESTS_IN_WINDOW - 1)
    answer(health, B, failed=True, times=MIN_REQUESTS_IN_WINDOW - 1)
    # Still inside the window, they count.
    clock.now += ERROR_WINDOW_S - 0.5
    answer(health, B, failed=True)
    assert health.state(B) == "ejected"
    # A's traffic goes on (its record stays), but its first 19 failures have left the window.
    answer(health, A, failed=False)
    clock.now += 0.5
    answer(health, A, failed=True)
    assert health.state(A) == "healthy"


def test_the_window_slides_so_only_its_last_seconds_are_judged() -> None:
    # Three answers a second for 30 s, one in three failed: below the rate, window after window.
    health, clock = health_on_a_clock()
    for _ in range(30):
        answer(health, A, failed=False, times=2)
        answer(health, A, failed=True)
        clock.now += 1.0
    assert health.state(A) == "healthy"
    # Then all failing: over the last ten seconds, the rate is reached in the third.
    for second in range(1, 4):
        answer(health, A, failed=True, times=3)
        assert health.state(A) == ("ejected" if second == 3 else "healthy"), second
        clock.now += 1.0


def test_three_consecutive_connection_failures_eject_and_an_answer_breaks_the_streak() -> None:
    health, _ = health_on_a_clock()
    refuse(health, A, times=2)
    answer(health, A, failed=True)  # a 5xx: a connection was made
    refuse(health, A, times=2)
    assert health.state(A) == "healthy"
    refuse(health, A, times=1)
    assert health.state(A) == "ejected" and not health.is_healthy(A)


def test_failures_in_one_experiment_leave_another_on_the_same_url_healthy() -> None:
    health, _ = health_on_a_clock()
    refuse(health, A)
    eject_by_error_rate(health, ("a2", URL))
    assert health.state(A) == "ejected"
    assert health.is_healthy(B) and health.state(B) == "healthy"


def test_a_failing_probe_ejects_the_url_for_every_experiment() -> None:
    health, _ = health_on_a_clock()
    answer(health, A, failed=False)
    health.probed(URL, ok=False)
    # Even for an experiment this process has sent nothing to yet.
    assert health.state(A) == health.state(B) == "ejected"
    assert not health.is_healthy(A) and not health.is_healthy(B)
    assert health.is_healthy(("a", "http://127.0.0.1:10"))
    health.probed(URL, ok=True)
    assert health.is_healthy(A) and health.is_healthy(B)


def test_a_passing_probe_readmits_a_connection_failure_ejection_at_once() -> None:
    health, _ = health_on_a_clock()
    refuse(health, A)
    health.probed(URL, ok=True)
    assert health.is_healthy(A) and health.state(A) == "healthy"


def test_a_passing_probe_before_the_ejection_does_not_readmit_it() -> None:
    health, _ = health_on_a_clock()
    health.probed(URL, ok=True)
    refuse(health, A)
    assert health.state(A) == "ejected"


def test_a_passing_probe_does_not_readmit_an_error_rate_ejection() -> None:
    health, clock = health_on_a_clock()
    eject_by_error_rate(health, A)
    health.probed(URL, ok=True)
    assert health.state(A) == "ejected" and not health.is_healthy(A)
    clock.now += FIRST_BACKOFF_S
    assert health.state(A) == "probation"


def test_probation_lets_one_trial_through_and_its_success_readmits() -> None:
    health, clock = health_on_a_clock()
    refuse(health, A)
    clock.now += FIRST_BACKOFF_S - 0.5
    assert not health.is_healthy(A)
    clock.now += 0.5
    assert health.state(A) == "probation" and health.is_healthy(A)
    health.sending(A)
    assert not health.is_healthy(A)
    # A trial never answered is taken as lost: another goes through.
    clock.now += TRIAL_TIMEOUT_S + 0.5
    assert health.is_healthy(A)
    health.sending(A)
    health.observe(A, failed=False)
    assert health.is_healthy(A) and health.state(A) == "healthy"
    # Readmitted with a clean slate: the next ejection backs off the first time again.
    refuse(health, A)
    clock.now += FIRST_BACKOFF_S
    assert health.state(A) == "probation"


def test_an_answer_to_a_request_sent_before_the_ejection_does_not_cut_the_back_off_short() -> None:
    health, clock = health_on_a_clock()
    eject_by_error_rate(health, A)
    health.observe(A, failed=False)
    assert health.state(A) == "ejected"
    clock.now += FIRST_BACKOFF_S
    assert health.state(A) == "probation"


def test_the_back_off_doubles_on_each_failed_trial_up_to_the_cap() -> None:
    health, clock = health_on_a_clock()
    eject_by_error_rate(health, A)
    backoffs = []
    for _ in range(6):
        ejected_at = clock.now
        while health.state(A) == "ejected":
            clock.now += 0.5
        backoffs.append(clock.now - ejected_at)
        health.sending(A)
        health.observe(A, failed=True)
    assert backoffs == [FIRST_BACKOFF_S, 4.0, 8.0, 16.0, MAX_BACKOFF_S, MAX_BACKOFF_S]


def test_records_of_idle_healthy_keys_are_dropped_after_a_window() -> None:
    health, clock = health_on_a_clock()
    for experiment in ("a", "b", "c"):
        answer(health, (experiment, URL), failed=False)
    refuse(health, ("ejected", URL))
    refuse(health, ("refused once", URL), times=1)
    assert health.record_count == 5
    clock.now += ERROR_WINDOW_S
    answer(health, A, failed=False)
    # What has something against it is kept; what has nothing is forgotten.
    assert health.record_count == 3
    assert health.state(("ejected", URL)) == "probation"


def test_the_record_count_is_capped_dropping_the_oldest() -> None:
    health, _ = health_on_a_clock(max_records=10)
    refuse(health, ("oldest", URL))
    for index in range(10):
        answer(health, (f"e{index}", URL), failed=False)
    assert health.record_count == 10
    assert health.state(("oldest", URL)) == "healthy"
    assert health.state(("e9", URL)) == "healthy"


def test_a_trial_that_gets_no_verdict_is_abandoned_so_the_next_request_may_try() -> None:
    # Its client failed or left before the arm answered: the arm must not wait TRIAL_TIMEOUT_S for a verdict.
    health, clock = health_on_a_clock()
    eject_by_error_rate(health, A)
    clock.now += FIRST_BACKOFF_S
    health.sending(A)
    assert not health.is_healthy(A)  # the trial is in flight
    health.abandon(A)
    assert health.is_healthy(A) and health.state(A) == "probation"
