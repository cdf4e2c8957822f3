"""A cap on the events streams (SSE) open at once, so that watchers cannot starve the proxy.

Each open stream costs its worker a task, stats reads and a history read every events interval,
on the event loop that also forwards /invoke/: a few hundred of them raised invoke's p95 from 3
to 40 ms. Past the cap a new stream is refused with 503 and Retry-After; the dashboard retries
later (static/dashboard.js).
"""

from __future__ import annotations

import math

from litestar.types import ASGIApp, Receive, Scope, Send

from bandit.core.errors import MabError
from bandit.core.settings import Settings

#: Seconds a refused client is asked to wait before it tries again.
RETRY_AFTER_S = 5


class TooManyEventStreams(MabError):
    """A new stream past the cap: 503, and come back in RETRY_AFTER_S."""

    status_code = 503

    def __init__(self, limit: EventStreamLimit) -> None:
        shares = f", {limit.per_process} in each of its {limit.workers} workers" if limit.workers > 1 else ""
        super().__init__(
            detail=f"too many events streams open: this replica serves at most {limit.replica_max} at once "
            f"(BANDIT_MAX_EVENT_STREAMS){shares}; retry in {RETRY_AFTER_S} s",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


class EventStreamLimit:
    """The events streams one worker process holds open at once: `per_process` at most.

    Each worker counts only its own streams (there is no counter shared between processes), and
    allows ceil(BANDIT_MAX_EVENT_STREAMS / BANDIT_WORKERS) of them: a replica with W workers then
    holds at most about BANDIT_MAX_EVENT_STREAMS (up to W - 1 more where it does not divide evenly).
    """

    def __init__(self, replica_max: int, workers: int) -> None:
        self.replica_max = replica_max
        self.workers = workers
        self.per_process = math.ceil(replica_max / workers)
        self.open = 0

    @classmethod
    def of(cls, settings: Settings) -> EventStreamLimit:
        return cls(settings.max_event_streams, settings.workers)

    def hold(self, stream: ASGIApp) -> ASGIApp:
        """`stream`, holding a slot from now until it has ended, however it ends (finished, client
        gone, error or cancellation); TooManyEventStreams when every slot is held.

        The handler returns the wrapper and Litestar calls it without suspending in between, so no
        cancellation can fall between taking the slot and the `finally` that gives it back.
        Releasing it in the stream's generator would not do: a client gone before the first event
        cancels the response before the generator has started, and its `finally` never runs.
        """
        if self.open >= self.per_process:
            raise TooManyEventStreams(self)
        self.open += 1

        async def held(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await stream(scope, receive, send)
            finally:
                self.open -= 1

        return held
