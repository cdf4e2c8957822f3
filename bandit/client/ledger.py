"""A batcher's books: what it was given, what the service acknowledged, what failed, and the reports of failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bandit.client.delivery import FeedbackFailure, Outcome

log = logging.getLogger("bandit.client")

#: Called with the rewards of one batch that will not be counted (see FeedbackFailure).
OnError = Callable[[list[FeedbackFailure]], None]


@dataclass(frozen=True, slots=True)
class BatcherCounters:
    """A consistent snapshot of a batcher's counters.

    `added` = `sent` + `failed` + `pending` at every moment; `sent` = `accepted` + `duplicate` +
    `rejected` (as the service counted them). `duplicate` includes rewards whose earlier post was
    counted but whose answer was lost, so it came back as a duplicate when sent again.
    """

    #: Taken by add() (refused ones, `dropped`, are not).
    added: int
    #: Acknowledged: covered by a 202.
    sent: int
    accepted: int
    duplicate: int
    #: Refused inside a 202 (forged, past the window, arm gone, out of bounds): final, reported.
    rejected: int
    #: Never acknowledged, given up: the whole request refused for good (401/403 token, 404...) or the close deadline.
    failed: int
    #: Of `failed` at close()'s deadline: those whose 202 came after all, too late. They stay in `failed`
    #: (on_error had them); the service did count them, so sending them again finds them duplicates.
    acknowledged_late: int
    #: Buffered or in flight, not settled yet.
    pending: int
    #: add() refused them: the buffer was full. Never sent.
    dropped: int
    #: Posts sent again (503, 502/504, 429, unreachable, a batch split in halves).
    retries: int
    #: Why the last retry happened, e.g. "503: the state store (Redis) is unavailable; retry shortly".
    last_retry_reason: str | None


class Ledger:
    """The counters behind BatcherCounters; its owner serialises access to it."""

    def __init__(self, on_error: OnError | None) -> None:
        self.added = self.sent = self.accepted = self.duplicate = self.rejected = self.failed = 0
        self.acknowledged_late = 0
        self.dropped = self.retries = 0
        self.last_retry_reason: str | None = None
        self._on_error = on_error
        self._full = False

    def added_one(self) -> None:
        self.added += 1
        self._full = False

    def dropped_one(self, capacity: int) -> None:
        self.dropped += 1
        if not self._full:  # logged once per spell of fullness, not once per reward
            self._full = True
            log.warning("feedback buffer full (%d rewards: is the service away?): new rewards are dropped", capacity)

    @property
    def settled(self) -> int:
        """Items that need nothing more: acknowledged or given up, in the order they were added."""
        return self.sent + self.failed

    def book(self, outcome: Outcome) -> None:
        self.sent += outcome.acknowledged
        self.accepted += outcome.accepted
        self.duplicate += outcome.duplicate
        self.rejected += len(outcome.rejected)
        self.failed += len(outcome.failed)
        self.acknowledged_late += outcome.acknowledged_late
        if outcome.retry_in_s is not None:
            self.retries += 1
            self.last_retry_reason = outcome.retry_reason

    def snapshot(self) -> BatcherCounters:
        return BatcherCounters(
            added=self.added,
            sent=self.sent,
            accepted=self.accepted,
            duplicate=self.duplicate,
            rejected=self.rejected,
            failed=self.failed,
            acknowledged_late=self.acknowledged_late,
            pending=self.added - self.settled,
            dropped=self.dropped,
            retries=self.retries,
            last_retry_reason=self.last_retry_reason,
        )

    def report(self, outcome: Outcome) -> None:
        """Log the outcome and hand its failures to on_error (outside any lock; the async batcher's way)."""
        self.log(outcome)
        for failures in (outcome.rejected, outcome.failed):
            if failures:
                self.hand_over(failures)

    def log(self, outcome: Outcome) -> None:
        """Log what the outcome holds worth telling."""
        if outcome.retry_in_s:
            log.info("feedback batch sent again in %.2f s: %s", outcome.retry_in_s, outcome.retry_reason)
        if outcome.acknowledged_late:
            log.info(
                "%d reward(s) failed at close()'s deadline were acknowledged after it: the service counted them",
                outcome.acknowledged_late,
            )
        for failures, what in ((outcome.rejected, "refused by the service"), (outcome.failed, "not delivered")):
            if not failures:
                continue
            first = failures[0]
            log.warning(
                "%d reward(s) %s, e.g. %s: %s",
                len(failures),
                what,
                first.status if first.status is not None else "no answer",
                first.reason,
            )

    def hand_over(self, failures: list[FeedbackFailure]) -> None:
        """Call on_error with the failures (outside any lock); what it raises is logged, not passed on."""
        if self._on_error is None:
            return
        try:
            self._on_error(failures)
        except Exception:  # the application's callback must not stop the deliveries
            log.exception("the batcher's on_error callback raised")
