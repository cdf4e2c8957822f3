"""close(timeout_s=T) keeps its deadline against a service that never answers: it returns within
about T, with every reward still unacknowledged booked `failed` once and handed to on_error; an
answer that comes after that changes nothing but `acknowledged_late`."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

import httpx
import pytest

from bandit.client import AsyncClient, Backoff, BatcherCounters, Client, FeedbackFailure
from tests.client.stalling import StallingServer
from tests.servers import ServiceProcess, wait_until

QUICK = Backoff(initial_s=0.02, max_s=0.1)
REWARDS = [(f"decision-{index}", 1.0) for index in range(5)]
#: What close(timeout_s=1) may take: its deadline, the short grace for an answer on its way, and a margin.
WITHIN_S = 1.5


def assert_all_failed_at_the_deadline(final: BatcherCounters, reported: list[FeedbackFailure]) -> None:
    assert (final.added, final.failed, final.sent, final.pending) == (5, 5, 0, 0), final
    assert sorted(f.decision for f in reported) == sorted(d for d, _ in REWARDS)
    assert {f.status for f in reported} == {None} and "deadline" in reported[0].reason


def test_close_gives_up_on_a_post_in_flight_that_never_answers_at_its_deadline() -> None:
    # The post went before close(), with the client's own 10 s timeout: close() must not wait for it.
    reported: list[FeedbackFailure] = []
    with StallingServer() as server, Client(server.url, timeout=10) as client:
        batcher = client.batcher(max_delay_s=60, on_error=reported.extend)
        for decision, value in REWARDS:
            batcher.add(decision, value)
        assert not batcher.flush(timeout_s=0.2)
        wait_until(lambda: server.requests == 1, 5, "the post held by the server")
        started = time.monotonic()
        final = batcher.close(timeout_s=1)
        elapsed = time.monotonic() - started
        reported_by_close = list(reported)
    assert elapsed < WITHIN_S, elapsed
    assert_all_failed_at_the_deadline(final, reported_by_close)


def test_an_answer_after_close_gave_up_is_counted_late_and_nothing_else_changes() -> None:
    reported: list[FeedbackFailure] = []
    with StallingServer() as server, Client(server.url, timeout=10) as client:
        batcher = client.batcher(max_delay_s=60, on_error=reported.extend)
        for decision, value in REWARDS:
            batcher.add(decision, value)
        assert not batcher.flush(timeout_s=0.2)
        wait_until(lambda: server.requests == 1, 5, "the post held by the server")
        assert batcher.close(timeout_s=0.3).failed == 5
        server.answer_held()  # the 202 for those five arrives now, after they were booked failed
        wait_until(lambda: batcher.counters.acknowledged_late == 5, 5, "the late answer counted")
        late = batcher.counters
    assert (late.added, late.sent, late.accepted, late.failed, late.pending) == (5, 0, 0, 5, 0), late
    assert len(reported) == 5  # reported once, by close()


def test_a_post_waiting_for_a_connection_and_then_for_its_answer_ends_by_the_deadline() -> None:
    # One connection, held by an invoke the server answers after 0.9 s: the post waits that long for it,
    # then for an answer that never comes. Timed phase by phase it would end at about 0.9 + 1 s.
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1))
    reported: list[FeedbackFailure] = []
    with (
        StallingServer(answer_after_s={"/invoke/slow/predict": 0.9}) as server,
        Client(server.url, timeout=10, transport=transport) as client,
    ):
        invoking = threading.Thread(target=client.invoke, args=("slow", "predict"))
        invoking.start()
        wait_until(lambda: server.requests == 1, 5, "the invoke holding the one connection")
        batcher = client.batcher(max_delay_s=60, backoff=QUICK, on_error=reported.extend)
        for decision, value in REWARDS:
            batcher.add(decision, value)
        started = time.monotonic()
        final = batcher.close(timeout_s=1)
        elapsed = time.monotonic() - started
        reported_by_close = list(reported)
        invoking.join()
    assert elapsed < WITHIN_S, elapsed
    assert_all_failed_at_the_deadline(final, reported_by_close)


class TimeoutRecorder(httpx.BaseTransport):
    """Forwards every request, keeping the per-phase timeouts httpx gave it."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.timeouts: list[dict[str, float]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.timeouts.append(request.extensions["timeout"])
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def test_a_post_given_a_time_left_splits_it_between_the_phases_of_the_request(service: ServiceProcess) -> None:
    recorder = TimeoutRecorder()
    with Client(service.url, timeout=10, transport=recorder) as client:
        assert client.post_feedback([("not-a-decision", 1.0)], timeout_s=2).status_code == 202
        assert client.post_feedback([("not-a-decision", 1.0)]).status_code == 202
    within_time_left, own_timeout = recorder.timeouts
    assert sum(within_time_left.values()) <= 2, within_time_left  # pool + connect + write + read
    assert within_time_left["read"] >= 0.5, within_time_left  # the service's answer gets the largest share
    assert set(own_timeout.values()) == {10}, own_timeout  # without one: the client's timeout, per phase


async def test_async_close_gives_up_on_a_post_in_flight_that_never_answers_at_its_deadline() -> None:
    reported: list[FeedbackFailure] = []
    with StallingServer() as server:
        async with AsyncClient(server.url, timeout=10) as client:
            batcher = client.batcher(max_delay_s=60, on_error=reported.extend)
            for decision, value in REWARDS:
                batcher.add(decision, value)
            assert not await batcher.flush(timeout_s=0.2)
            started = time.monotonic()
            final = await batcher.close(timeout_s=1)
            elapsed = time.monotonic() - started
            reported_by_close = list(reported)
            assert server.requests == 1
    assert elapsed < WITHIN_S, elapsed
    assert_all_failed_at_the_deadline(final, reported_by_close)


async def test_async_post_waiting_for_a_connection_and_then_for_its_answer_ends_by_the_deadline() -> None:
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
    reported: list[FeedbackFailure] = []
    with StallingServer(answer_after_s={"/invoke/slow/predict": 0.9}) as server:
        async with AsyncClient(server.url, timeout=10, transport=transport) as client:
            invoking = asyncio.create_task(client.invoke("slow", "predict"))
            await asyncio.to_thread(wait_until, lambda: server.requests == 1, 5, "the invoke holding the connection")
            batcher = client.batcher(max_delay_s=60, backoff=QUICK, on_error=reported.extend)
            for decision, value in REWARDS:
                batcher.add(decision, value)
            started = time.monotonic()
            final = await batcher.close(timeout_s=1)
            elapsed = time.monotonic() - started
            reported_by_close = list(reported)
            assert (await invoking).status_code == 200
    assert elapsed < WITHIN_S, elapsed
    assert_all_failed_at_the_deadline(final, reported_by_close)


def test_close_called_from_on_error_on_the_sender_thread_returns_at_once(caplog: pytest.LogCaptureFixture) -> None:
    # An application that stops reporting at its first failure: on_error closes the batcher.
    called_on: list[str] = []

    def stop(failures: list[FeedbackFailure]) -> None:
        called_on.append(threading.current_thread().name)
        batcher.close(timeout_s=1)

    with StallingServer() as server, Client(server.url) as client:
        batcher = client.batcher(max_delay_s=60, backoff=QUICK, on_error=stop)
        batcher.add("a-decision", 1)
        with caplog.at_level(logging.ERROR, logger="bandit.client"):
            # The post goes after close(), within its deadline: the sender itself fails it, and calls on_error.
            final = batcher.close(timeout_s=0.5)
        assert server.requests >= 1
    assert (final.failed, final.pending) == (1, 0), final
    assert called_on == ["bandit-feedback-batcher"]
    assert not [r for r in caplog.records if "on_error" in r.getMessage()], caplog.text


def test_closing_twice_while_a_post_is_held_still_counts_its_late_answer() -> None:
    # Closed twice (by the application, then by its client) before the held post's 202 comes back.
    reported: list[FeedbackFailure] = []
    with StallingServer() as server, Client(server.url, timeout=10) as client:
        batcher = client.batcher(max_delay_s=60, on_error=reported.extend)
        for decision, value in REWARDS:
            batcher.add(decision, value)
        assert not batcher.flush(timeout_s=0.2)
        wait_until(lambda: server.requests == 1, 5, "the post held by the server")
        assert batcher.close(timeout_s=0.3).failed == 5
        assert batcher.close(timeout_s=0.3).failed == 5  # nothing more to give up on
        server.answer_held()
        wait_until(lambda: batcher.counters.acknowledged_late == 5, 5, "the late answer counted")
        late = batcher.counters
    assert (late.added, late.sent, late.failed, late.acknowledged_late, late.pending) == (5, 0, 5, 5, 0), late
    assert len(reported) == 5


def test_close_keeps_its_deadline_while_the_sender_is_in_a_slow_on_error(client: Client) -> None:
    # on_error writes the failures somewhere slow; close() has nothing left to report, and must not wait for it.
    reporting, release = threading.Event(), threading.Event()

    def slow(failures: list[FeedbackFailure]) -> None:
        reporting.set()
        release.wait(5)

    batcher = client.batcher(max_delay_s=60, on_error=slow)
    batcher.add("not-a-decision", 1)  # refused inside the 202: reported by the sender
    assert batcher.flush(timeout_s=5) and reporting.wait(5)
    started = time.monotonic()
    final = batcher.close(timeout_s=0.3)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < WITHIN_S, elapsed
    assert (final.added, final.rejected, final.failed, final.pending) == (1, 1, 0, 0), final


def test_what_close_gives_up_while_on_error_waits_on_the_closing_thread_is_reported_once_after(
    client: Client,
) -> None:
    # on_error puts the failures on a bounded queue that the thread now closing consumes, once close() returned:
    # close() waiting for on_error would wait for itself.
    failures: queue.Queue[object] = queue.Queue(maxsize=1)
    failures.put("an earlier report, not consumed yet")
    reporting = threading.Event()

    def hand_on(batch: list[FeedbackFailure]) -> None:
        reporting.set()
        failures.put([(f.decision, f.status, threading.current_thread().name) for f in batch], timeout=5)

    batcher = client.batcher(max_delay_s=60, on_error=hand_on)
    batcher.add("not-a-decision", 1)
    assert batcher.flush(timeout_s=5) and reporting.wait(5)
    for decision, value in REWARDS:
        batcher.add(decision, value)  # buffered: the sender is in on_error
    started = time.monotonic()
    final = batcher.close(timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert elapsed < WITHIN_S, elapsed
    assert (final.added, final.rejected, final.failed, final.pending) == (6, 1, 5, 0), final

    consumed = [failures.get(timeout=5) for _ in range(3)]
    sender = batcher._thread
    assert sender is not None
    sender.join(5)
    assert not sender.is_alive() and failures.empty()  # each failure reported once
    earlier, rejected, given_up = consumed
    assert earlier == "an earlier report, not consumed yet"
    assert [(decision, thread) for decision, _, thread in rejected] == [("not-a-decision", "bandit-feedback-batcher")]
    # What close() gave up on went on_error's way by the thread that was in it, once its call returned.
    assert given_up == [(decision, None, "bandit-feedback-batcher") for decision, _ in REWARDS], given_up
