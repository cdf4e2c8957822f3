"""FailureReports under contention: threads reporting at once hand every list to on_error once,
one call at a time, and none of them waits for a call in progress unless asked to."""

from __future__ import annotations

import threading
import time

from bandit.client import FeedbackFailure
from bandit.client.reports import FailureReports


def failure(decision: str) -> list[FeedbackFailure]:
    return [FeedbackFailure(decision, 1.0, None, "not acknowledged")]


def test_threads_reporting_at_once_hand_each_list_once_and_one_call_at_a_time() -> None:
    inside, overlapped, handed = [0], [], []
    counting = threading.Lock()

    def on_error(failures: list[FeedbackFailure]) -> None:
        with counting:
            inside[0] += 1
            overlapped.append(inside[0] > 1)
        time.sleep(0.0005)  # long enough for the other threads to come while this call is in progress
        handed.extend(f.decision for f in failures)
        with counting:
            inside[0] -= 1

    reports = FailureReports(on_error)
    names = [[f"{thread}-{index}" for index in range(40)] for thread in range(6)]
    threads = [threading.Thread(target=lambda own=own: [reports.report(failure(n)) for n in own]) for own in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(overlapped) == 240 and not any(overlapped)
    assert sorted(handed) == sorted(name for own in names for name in own)
    assert [n for n in handed if n.startswith("0-")] == names[0]  # each thread's lists in the order it gave them


def test_a_report_waits_for_a_call_in_progress_only_until_its_time_then_that_call_hands_it_on() -> None:
    entered, release = threading.Event(), threading.Event()
    handed: list[tuple[str, str]] = []

    def on_error(failures: list[FeedbackFailure]) -> None:
        handed.append((failures[0].decision, threading.current_thread().name))
        if failures[0].decision == "first":
            entered.set()
            release.wait(5)

    reports = FailureReports(on_error)
    busy = threading.Thread(target=reports.report, args=(failure("first"),), name="busy")
    busy.start()
    assert entered.wait(5)
    started = time.monotonic()
    reports.report(failure("second"))  # the sender's way: no waiting at all
    reports.report(failure("third"), wait_until=time.monotonic() + 0.2)  # close()'s: until its deadline
    waited = time.monotonic() - started
    assert 0.2 <= waited < 1, waited
    assert handed == [("first", "busy")]
    release.set()
    busy.join(5)
    assert handed == [("first", "busy"), ("second", "busy"), ("third", "busy")]
