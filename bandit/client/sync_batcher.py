"""FeedbackBatcher: rewards buffered by application threads, sent in batches by a thread of its own."""

from __future__ import annotations

import atexit
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Protocol

import httpx

from bandit.client.backoff import Backoff
from bandit.client.buffer import (
    CLOSE_GRACE_S,
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_MAX_BUFFERED,
    NOT_ACKNOWLEDGED_IN_TIME,
    RewardBuffer,
)
from bandit.client.delivery import Delivery, Outcome, given_up
from bandit.client.errors import Unreachable
from bandit.client.forks import ProcessBound
from bandit.client.ledger import BatcherCounters, Ledger, OnError, log
from bandit.client.limits import Item, checked_item
from bandit.client.reports import FailureReports


class FeedbackPoster(Protocol):
    """What the batcher sends through: `Client.post_feedback`."""

    def post_feedback(self, items: Sequence[Item], *, timeout_s: float | None = None) -> httpx.Response:
        """`timeout_s`: the whole time the request may take (the time left before close()'s deadline)."""
        ...


class FeedbackBatcher:
    """Buffers rewards and posts them in batches from a background thread; see `bandit.client`.

    A batch goes when it has `max_items` rewards, when its oldest is `max_delay_s` old, on
    flush() and on close(). `add` is thread-safe and never blocks on the network; the sending
    thread starts with the first reward. In a child process forked after it was made, it starts
    again empty on its first use there, with locks and a sender of its own.
    """

    def __init__(
        self,
        client: FeedbackPoster,
        *,
        max_items: int = 500,
        max_delay_s: float = 1.0,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        on_error: OnError | None = None,
        backoff: Backoff | None = None,
        seed: int | None = None,
    ) -> None:
        self._client = client
        self._limits = (max_items, max_delay_s, max_buffered)
        self._on_error = on_error
        self._backoff = backoff or Backoff()
        self._seed = seed
        self._closing = False
        self._deadline: float | None = None
        self._process = ProcessBound()
        self._start(random.Random(seed))
        # A daemon thread dies with the interpreter: what is left is sent at exit, within the usual deadline.
        self._at_exit = self.close
        atexit.register(self._at_exit)

    def _start(self, rng: random.Random) -> None:
        """Empty books and the locks, no sender yet (the first reward starts it): when made, and in a child."""
        self._buffer = RewardBuffer(*self._limits)
        self._ledger = Ledger(self._on_error)
        # on_error is called from one thread at a time (the sender's, or that of close() giving up).
        self._reports = FailureReports(self._ledger.hand_over)
        self._rng = rng
        # The batch on its way, which close() gives up on at its deadline if the sender has not.
        self._in_flight: Delivery | None = None
        self._lock = threading.Lock()
        # One condition for every change: items added, a flush asked for, items settled, closing.
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def _here(self) -> None:
        """Make this process's own books, locks and sender, if this is a child forked since (see `forks`).

        What the parent had buffered or in flight stays the parent's to send and to count: a child
        sending it too would be harmless to the service (it counts each decision once) but would
        count it in two processes' books and report its failures twice. The parent's lock may be
        held in the child for good (by a thread of the parent's), and its sender does not exist there.
        """
        self._process.rebuild_if_forked(self._start_in_child)

    def _start_in_child(self) -> None:
        self._start(random.Random(None if self._seed is None else f"{self._seed}/{os.getpid()}"))

    # -- what the application calls ------------------------------------------------------------
    def add(self, decision: str, value: float) -> bool:
        """Buffer a reward; False when it was dropped because the buffer is full (counted in `dropped`).

        ValueError for a malformed reward; RuntimeError once the batcher is closed.
        """
        item = checked_item(decision, value)
        self._here()
        with self._lock:
            if self._closing:
                raise RuntimeError("the feedback batcher is closed: rewards can no longer be added")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bandit-feedback-batcher", daemon=True)
                self._thread.start()
            if not self._buffer.put(item, time.monotonic()):
                self._ledger.dropped_one(self._buffer.max_buffered)
                return False
            self._ledger.added_one()
            if len(self._buffer) in (1, self._buffer.max_items):  # a new age to time, or a full batch
                self._changed.notify_all()
            return True

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything added so far now, and wait until it is settled; False if not within `timeout_s`.

        Settled: acknowledged, or failed (see `counters`). During an outage this waits for the
        retries, which honour the service's Retry-After.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._here()
        with self._lock:
            target = self._buffer.flush_all()
            self._changed.notify_all()
            while self._ledger.settled < target:
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> BatcherCounters:
        """Send what is left, retrying until `timeout_s` from now, then stop; returns the final counters.

        Rewards still unacknowledged at the deadline (buffered, or on their way without an answer
        yet) count as `failed` and go to on_error before close() returns (status None: they may be
        sent again later, and count once), unless on_error is still busy with an earlier call at
        the deadline: then the thread in it hands them on once that call returns. close() returns
        within about `timeout_s`, whatever the network (or on_error) does. Closing twice is
        harmless; closing from on_error returns at once, and the sender keeps to the deadline.
        """
        self._here()
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + max(0.0, timeout_s)
                self._changed.notify_all()
            deadline = self._deadline if self._deadline is not None else time.monotonic()
        sender = self._thread
        if threading.current_thread() is sender:  # from on_error: the sender must go on to end
            return self.counters
        if sender is not None:
            sender.join(max(0.0, deadline - time.monotonic()) + CLOSE_GRACE_S)
        # Normally the sender has settled everything by now; if a post of its outlasts the deadline
        # (made before close(), with the client's own timeout), what it carries fails here, and its
        # answer, when it comes, settles nothing more.
        self._conclude(
            lambda: given_up(self._in_flight, self._buffer.take_all()), report_until=deadline + CLOSE_GRACE_S
        )
        atexit.unregister(self._at_exit)
        return self.counters

    @property
    def counters(self) -> BatcherCounters:
        self._here()
        with self._lock:
            return self._ledger.snapshot()

    @property
    def closed(self) -> bool:
        return self._closing

    def __enter__(self) -> FeedbackBatcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- the sending thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while (delivery := self._next_delivery()) is not None:
            try:
                self._deliver(delivery)
            except Exception:  # a bug here must not leave flush() and close() waiting forever
                log.exception("the feedback batcher failed to deliver a batch")
                self._conclude(partial(delivery.abandon, "the batcher failed (see its log)"))

    def _next_delivery(self) -> Delivery | None:
        """The next batch on its way, once one is due; None once closing and nothing is left."""
        with self._lock:
            self._in_flight = None
            while not self._buffer.due(time.monotonic(), self._closing):
                if self._closing:
                    return None
                self._changed.wait(self._buffer.wait_s(time.monotonic()))
            self._in_flight = Delivery(self._buffer.take(), self._backoff, self._rng)
            return self._in_flight

    def _deliver(self, delivery: Delivery) -> None:
        while True:
            with self._lock:  # close() may give up on the delivery at any moment
                part = delivery.next_part()
                time_left = self._time_left()
            if part is None:
                return
            if time_left is not None and time_left <= 0:
                outcome = self._conclude(partial(delivery.abandon, NOT_ACKNOWLEDGED_IN_TIME))
            else:
                outcome = self._conclude(self._post(delivery, part, time_left))
            if outcome.retry_in_s:
                self._pause(outcome.retry_in_s)

    def _post(self, delivery: Delivery, part: list[Item], time_left: float | None) -> Callable[[], Outcome]:
        """Post the part (outside the lock); what its answer settles, to be concluded under the lock."""
        try:
            response = self._client.post_feedback(part, timeout_s=time_left)
        except Unreachable as error:
            return partial(delivery.unreachable, str(error))
        return partial(delivery.answered, response)

    def _conclude(self, settle: Callable[[], Outcome], report_until: float = 0.0) -> Outcome:
        """Settle, count and wake whoever waits, under the lock (so that the sender and close() never
        both settle the same items), then report (outside it).

        Failures go to on_error from this thread, or, if another is in on_error, from that one once
        its call returns: this waits for that until the monotonic time `report_until` at most (the
        sender not at all, close() until its deadline), never without limit (see `reports`).
        """
        with self._lock:
            outcome = settle()
            self._ledger.book(outcome)
            self._changed.notify_all()
        self._ledger.log(outcome)
        if outcome.rejected or outcome.failed:
            self._reports.report(outcome.rejected, outcome.failed, wait_until=report_until)
        return outcome

    def _pause(self, delay_s: float) -> None:
        """Wait before a retry, cut short by the close deadline."""
        wake_at = time.monotonic() + delay_s
        with self._lock:
            while (remaining := self._until(wake_at)) > 0:
                self._changed.wait(remaining)

    def _until(self, wake_at: float) -> float:
        limit = wake_at if self._deadline is None else min(wake_at, self._deadline)
        return limit - time.monotonic()

    def _time_left(self) -> float | None:
        """None (the client's own timeout) until close() set a deadline, then the time left before it."""
        return None if self._deadline is None else self._deadline - time.monotonic()
