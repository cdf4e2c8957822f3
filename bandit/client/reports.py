"""Failures on their way to a sync batcher's on_error: one call at a time, each list once, in order.

Whoever has failures to report (the sender thread, or close() with what it gave up on) queues
them; if no thread is in on_error, it becomes the one that calls it, until the queue is empty.
If a thread is in it, nobody waits for that call without limit (the application's on_error may
be slow, or blocked on the very thread that is closing, e.g. a put on a queue it consumes): the
sender queues its failures and goes on, close() waits until its own deadline at most, then
leaves them to the thread in on_error, which hands them on as soon as its call returns.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from bandit.client.delivery import FeedbackFailure


class FailureReports:
    def __init__(self, call: Callable[[list[FeedbackFailure]], None]) -> None:
        self._call = call
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[list[FeedbackFailure]] = deque()
        # Lists ever queued, and ever handed to on_error (in the same order): how a caller knows its own were.
        self._queued = 0
        self._handed = 0
        # The thread calling on_error now, None when none is.
        self._caller: threading.Thread | None = None

    def report(self, *failures: list[FeedbackFailure], wait_until: float = 0.0) -> None:
        """Hand each non-empty list to on_error, from this thread or from the one already in on_error.

        When a thread is in on_error, this waits for it (to hand the lists on itself once it
        returns, or for it to have handed them) until the monotonic time `wait_until` at most
        (by default not at all); after that that thread hands them on when its call returns.
        From on_error itself (it called close()), the lists are handed on once it returns.
        """
        me = threading.current_thread()
        with self._lock:
            for batch in failures:
                if batch:
                    self._queue.append(batch)
                    self._queued += 1
            mine = self._queued
            while self._caller is not None:
                if self._handed >= mine or self._caller is me:
                    return
                remaining = wait_until - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)
            self._caller = me
        self._hand_on()

    def _hand_on(self) -> None:
        """Call on_error with every list queued, until none is left (more may come meanwhile)."""
        handing: list[FeedbackFailure] | None = None
        try:
            while True:
                with self._lock:
                    if handing is not None:
                        self._handed += 1
                        self._changed.notify_all()
                        handing = None
                    if not self._queue:  # given up under the same lock as the queue is seen empty
                        self._caller = None
                        self._changed.notify_all()
                        return
                    handing = self._queue.popleft()
                self._call(handing)  # catches what on_error raises
        except BaseException:  # KeyboardInterrupt, SystemExit in on_error: what is still queued goes to the next
            with self._lock:
                if handing is not None:
                    self._handed += 1
                self._caller = None
                self._changed.notify_all()
            raise
