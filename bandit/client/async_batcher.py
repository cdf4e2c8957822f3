"""AsyncFeedbackBatcher: rewards buffered from an event loop, sent in batches by a task of its own."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
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
from bandit.client.ledger import BatcherCounters, Ledger, OnError, log
from bandit.client.limits import Item, checked_item

#: The sending tasks still running: the loop keeps only weak references to tasks, and a batcher the
#: application let go of must still send what it holds.
_SENDING: set[asyncio.Task[None]] = set()


class AsyncFeedbackPoster(Protocol):
    """What the batcher sends through: `AsyncClient.post_feedback`."""

    async def post_feedback(self, items: Sequence[Item], *, timeout_s: float | None = None) -> httpx.Response:
        """`timeout_s`: the whole time the request may take (the time left before close()'s deadline)."""
        ...


class AsyncFeedbackBatcher:
    """The asyncio twin of FeedbackBatcher: same rules, same counters; see `bandit.client`.

    Use it from one event loop: `add` is a plain (non-async) call that never waits; the sending
    task starts with the first `add` (or `async with`). `flush` and `close` are coroutines.
    """

    def __init__(
        self,
        client: AsyncFeedbackPoster,
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
        self._closing = False
        self._deadline: float | None = None
        self._task: asyncio.Task[None] | None = None
        # The batch on its way, which close() gives up on at its deadline if the task has not.
        self._in_flight: Delivery | None = None
        # Set on every change (items added, a flush asked for, items settled, closing), then replaced:
        # whoever waits holds the one that was current and wakes when it is set.
        self._changed = asyncio.Event()

    # -- what the application calls ------------------------------------------------------------
    def add(self, decision: str, value: float) -> bool:
        """Buffer a reward; False when it was dropped because the buffer is full (counted in `dropped`).

        ValueError for a malformed reward; RuntimeError once closed, or when called outside the event loop.
        """
        item = checked_item(decision, value)
        if self._closing:
            raise RuntimeError("the feedback batcher is closed: rewards can no longer be added")
        self._start()
        if not self._buffer.put(item, time.monotonic()):
            self._ledger.dropped_one(self._buffer.max_buffered)
            return False
        self._ledger.added_one()
        if len(self._buffer) in (1, self._buffer.max_items):  # a new age to time, or a full batch
            self._notify()
        return True

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything added so far now, and wait until it is settled; False if not within `timeout_s`."""
        target = self._buffer.flush_all()
        self._notify()
        try:
            async with asyncio.timeout(timeout_s):
                while self._ledger.settled < target:
                    if self._task is None or self._task.done():
                        return False
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> BatcherCounters:
        """Send what is left, retrying until `timeout_s` from now, then stop; returns the final counters.

        Rewards still unacknowledged at the deadline (buffered, or on their way without an answer
        yet) count as `failed` and go to on_error before close() returns. close() returns within
        about `timeout_s`, whatever the network does.
        """
        if not self._closing:
            self._closing = True
            self._deadline = time.monotonic() + max(0.0, timeout_s)
            self._notify()
        deadline = self._deadline if self._deadline is not None else time.monotonic()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - time.monotonic()) + CLOSE_GRACE_S)
            except TimeoutError:
                # Still waiting for an answer (a post made before close(), with the client's own timeout):
                # stopped, so that what it carries fails here, once.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._settle(given_up(self._in_flight, self._buffer.take_all()))
        return self.counters

    aclose = close

    @property
    def counters(self) -> BatcherCounters:
        return self._ledger.snapshot()

    @property
    def closed(self) -> bool:
        return self._closing

    async def __aenter__(self) -> AsyncFeedbackBatcher:
        self._start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    # -- the sending task ----------------------------------------------------------------------
    def _start(self) -> None:
        """Start the sending task on the running loop, the first time; refuse a call from anywhere else."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or (self._task is not None and self._task.get_loop() is not loop):
            raise RuntimeError(
                "AsyncFeedbackBatcher must be used from the event loop it runs on (FeedbackBatcher is for threads)"
            )
        if self._task is None:
            self._task = loop.create_task(self._run(), name="bandit-feedback-batcher")
            _SENDING.add(self._task)
            self._task.add_done_callback(_SENDING.discard)

    async def _run(self) -> None:
        while (delivery := await self._next_delivery()) is not None:
            try:
                await self._deliver(delivery)
            except Exception:  # a bug here must not leave flush() and close() waiting forever
                log.exception("the feedback batcher failed to deliver a batch")
                self._settle(delivery.abandon("the batcher failed (see its log)"))

    async def _next_delivery(self) -> Delivery | None:
        """The next batch on its way, once one is due; None once closing and nothing is left."""
        self._in_flight = None
        while not self._buffer.due(time.monotonic(), self._closing):
            if self._closing:
                return None
            await self._wait(self._buffer.wait_s(time.monotonic()))
        self._in_flight = Delivery(self._buffer.take(), self._backoff, self._rng)
        return self._in_flight

    async def _deliver(self, delivery: Delivery) -> None:
        while (part := delivery.next_part()) is not None:
            timeout_s = None if self._deadline is None else self._deadline - time.monotonic()
            if timeout_s is not None and timeout_s <= 0:
                outcome = delivery.abandon(NOT_ACKNOWLEDGED_IN_TIME)
            else:
                try:
                    outcome = delivery.answered(await self._client.post_feedback(part, timeout_s=timeout_s))
                except Unreachable as error:
                    outcome = delivery.unreachable(str(error))
            self._settle(outcome)
            if outcome.retry_in_s:
                await self._pause(outcome.retry_in_s)

    def _settle(self, outcome: Outcome) -> None:
        self._ledger.book(outcome)
        self._notify()
        self._ledger.report(outcome)

    async def _pause(self, delay_s: float) -> None:
        """Wait before a retry, cut short by the close deadline."""
        wake_at = time.monotonic() + delay_s
        while True:
            limit = wake_at if self._deadline is None else min(wake_at, self._deadline)
            remaining = limit - time.monotonic()
            if remaining <= 0:
                return
            await self._wait(remaining)

    async def _wait(self, timeout_s: float | None) -> None:
        """Until the next change, or `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
