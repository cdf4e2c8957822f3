"""FeedbackBatcher: rewards buffered by application threads, sent in batches by a thread of its own."""

from __future__ import annotations

import atexit
import random
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

import httpx

from bandit.client.backoff import Backoff
from bandit.client.buffer import (
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_MAX_BUFFERED,
    JOIN_GRACE_S,
    NOT_ACKNOWLEDGED_IN_TIME,
    RewardBuffer,
)
from bandit.client.delivery import Delivery, Outcome
from bandit.client.errors import Unreachable
from bandit.client.ledger import BatcherCounters, Ledger, OnError, log
from bandit.client.limits import Item, checked_item


class FeedbackPoster(Protocol):
    """What the batcher sends through: `Client.post_feedback`."""

    def post_feedback(self, items: Sequence[Item], *, timeout_s: float | None = None) -> httpx.Response: ...


class FeedbackBatcher:
    """Buffers rewards and posts them in batches from a background thread; see `bandit.client`.

    A batch goes when it has `max_items` rewards, when its oldest is `max_delay_s` old, on
    flush() and on close(). `add` is thread-safe and never blocks on the network.
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
        self._buffer = RewardBuffer(max_items, max_delay_s, max_buffered)
        self._ledger = Ledger(on_error)
        self._backoff = backoff or Backoff()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        # One condition for every change: items added, a flush asked for, items settled, closing.
        self._changed = threading.Condition(self._lock)
        self._closing = False
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name="bandit-feedback-batcher", daemon=True)
        self._thread.start()
        # A daemon thread dies with the interpreter: what is left is sent at exit, within the usual deadline.
        self._at_exit = self.close
        atexit.register(self._at_exit)

    # -- what the application calls ------------------------------------------------------------
    def add(self, decision: str, value: float) -> bool:
        """Buffer a reward; False when it was dropped because the buffer is full (counted in `dropped`).

        ValueError for a malformed reward; RuntimeError once the batcher is closed.
        """
        item = checked_item(decision, value)
        with self._lock:
            if self._closing:
                raise RuntimeError("the feedback batcher is closed: rewards can no longer be added")
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
        with self._lock:
            target = self._buffer.flush_all()
            self._changed.notify_all()
            while self._ledger.settled < target:
                if not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> BatcherCounters:
        """Send what is left, retrying until `timeout_s` from now, then stop; returns the final counters.

        Rewards still unacknowledged at the deadline count as `failed` and go to on_error
        (status None: they may be sent again later, and count once). Closing twice is harmless.
        """
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + max(0.0, timeout_s)
                self._changed.notify_all()
        self._thread.join(max(0.0, timeout_s) + JOIN_GRACE_S)
        atexit.unregister(self._at_exit)
        return self.counters

    @property
    def counters(self) -> BatcherCounters:
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
        while (batch := self._next_batch()) is not None:
            delivery = Delivery(batch, self._backoff, self._rng)
            try:
                self._deliver(delivery)
            except Exception:  # a bug here must not leave flush() and close() waiting forever
                log.exception("the feedback batcher failed to deliver a batch")
                self._settle(delivery.abandon("the batcher failed (see its log)"))

    def _next_batch(self) -> list[Item] | None:
        """The next batch once one is due; None once closing and nothing is left."""
        with self._lock:
            while not self._buffer.due(time.monotonic(), self._closing):
                if self._closing:
                    return None
                self._changed.wait(self._buffer.wait_s(time.monotonic()))
            return self._buffer.take()

    def _deliver(self, delivery: Delivery) -> None:
        while (part := delivery.next_part()) is not None:
            timeout_s = self._request_timeout()
            if timeout_s is not None and timeout_s <= 0:
                outcome = delivery.abandon(NOT_ACKNOWLEDGED_IN_TIME)
            else:
                try:
                    outcome = delivery.answered(self._client.post_feedback(part, timeout_s=timeout_s))
                except Unreachable as error:
                    outcome = delivery.unreachable(str(error))
            self._settle(outcome)
            if outcome.retry_in_s:
                self._pause(outcome.retry_in_s)

    def _settle(self, outcome: Outcome) -> None:
        """Count the outcome and wake whoever waits for it, then report it (outside the lock)."""
        with self._lock:
            self._ledger.book(outcome)
            self._changed.notify_all()
        self._ledger.report(outcome)

    def _pause(self, delay_s: float) -> None:
        """Wait before a retry, cut short by the close deadline."""
        wake_at = time.monotonic() + delay_s
        with self._lock:
            while (remaining := self._until(wake_at)) > 0:
                self._changed.wait(remaining)

    def _until(self, wake_at: float) -> float:
        limit = wake_at if self._deadline is None else min(wake_at, self._deadline)
        return limit - time.monotonic()

    def _request_timeout(self) -> float | None:
        """None (the client's own timeout) until close() set a deadline, then the time left before it."""
        with self._lock:
            return None if self._deadline is None else self._deadline - time.monotonic()
