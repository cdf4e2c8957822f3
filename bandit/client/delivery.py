"""Sending one batch of rewards until each of them is settled, without doing any I/O itself.

A batch is settled item by item: *acknowledged* once a 202 covering it came back (accepted,
duplicate, or rejected inside the 202, which is final), or *failed* once it is given up. The
sync and the async batcher run the same loop around this:

    while (part := delivery.next_part()) is not None:
        outcome = delivery.answered(post(part))  # or delivery.unreachable(error)
        ... book the outcome, then wait outcome.retry_in_s if it is set

A part is always sent again exactly as it was: the service counts each decision once, so a
batch whose 202 was lost on the way back counts once when it is sent again.

close() may give up on a delivery while one of its posts is still on its way (`given_up`): its
items are failed then, once (giving up again gives up nothing). An answer that comes afterwards
settles nothing more; a 202 is only counted as `acknowledged_late`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import httpx

from bandit.client.backoff import Backoff
from bandit.client.buffer import NOT_ACKNOWLEDGED_IN_TIME
from bandit.client.errors import ApiError
from bandit.client.limits import Item
from bandit.client.results import FeedbackResult

#: Answers after which the same batch is sent again: the service (or a gateway before it) is
#: overloaded or away for a while (503: Redis is down, with Retry-After), or a gateway could not reach it.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
#: Answers that refuse a whole batch for its content: halves are sent instead, so that one item the
#: service refuses (past the client's own checks) is all that fails.
SPLIT_STATUSES = frozenset({413, 422})


@dataclass(frozen=True, slots=True)
class FeedbackFailure:
    """A reward that will not be counted: refused by the service, or given up on.

    `status` is the service's status for it (403 forged, 410 past the window, 401/403 on the
    whole request: a wrong token...), or None when no answer came (unreachable until the close
    deadline): such a reward may be sent again later, and counts once if it was counted already.
    """

    decision: str
    reward: float
    status: int | None
    reason: str
    #: True when the service did answer for this reward inside a 202 (a final refusal of it alone).
    acknowledged: bool = False


@dataclass(slots=True)
class Outcome:
    """What one post settled, and whether (and after how long) to post again."""

    #: Items a 202 covered (as many as were posted, whatever the counts inside say).
    acknowledged: int = 0
    accepted: int = 0
    duplicate: int = 0
    #: Refused inside a 202: acknowledged, and final.
    rejected: list[FeedbackFailure] = field(default_factory=list)
    #: Never acknowledged and given up on.
    failed: list[FeedbackFailure] = field(default_factory=list)
    #: Set: the next part goes after this many seconds (0: at once, e.g. a batch split in halves).
    retry_in_s: float | None = None
    retry_reason: str | None = None
    #: Items already failed by close()'s deadline that a 202 covered after all (they stay failed).
    acknowledged_late: int = 0


class Delivery:
    """One batch on its way: the parts still to post, and the retries of the current one."""

    def __init__(self, batch: list[Item], backoff: Backoff, rng: random.Random) -> None:
        self._parts: deque[list[Item]] = deque([batch] if batch else [])
        self._backoff = backoff
        self._rng = rng
        self._retries = 0
        # The items of the post on its way when the delivery was given up on (what a late 202 covers).
        self._given_up_in_flight = 0

    def next_part(self) -> list[Item] | None:
        """The items to post next (the same list again after a retry), None when all are settled."""
        return self._parts[0] if self._parts else None

    def answered(self, response: httpx.Response) -> Outcome:
        if not self._parts:  # given up on while this post was on its way: its items are failed already
            return Outcome(acknowledged_late=self._given_up_in_flight if response.is_success else 0)
        status = response.status_code
        part = self._parts[0]
        if response.is_success:
            self._settle()
            try:
                result = FeedbackResult.decode(response)
            except ApiError as unreadable:
                return Outcome(failed=_failures(part, status, unreadable.detail))
            rejected = [
                FeedbackFailure(*part[item["index"]], item["status"], item["reason"], acknowledged=True)
                for item in result.errors
                if 0 <= item["index"] < len(part)
            ]
            return Outcome(len(part), result.accepted, result.duplicate, rejected)
        refusal = ApiError.from_response(response)
        if status in RETRIED_STATUSES:
            return self._retry(f"{status}: {refusal.detail}", refusal.retry_after_s)
        if status in SPLIT_STATUSES and len(part) > 1:
            middle = len(part) // 2
            self._parts.popleft()
            self._parts.extendleft([part[middle:], part[:middle]])
            return Outcome(retry_in_s=0.0, retry_reason=f"{status}: {refusal.detail} (sent again in halves)")
        # 401/403 (the token), 404 (not a mab URL), 500...: sending it again would get the same.
        self._settle()
        return Outcome(failed=_failures(part, status, refusal.detail))

    def unreachable(self, reason: str) -> Outcome:
        if not self._parts:  # given up on meanwhile: nothing left to retry
            return Outcome()
        return self._retry(f"unreachable: {reason}", None)

    def abandon(self, reason: str) -> Outcome:
        """Give up on every item not settled yet (the close deadline passed); nothing once given up on."""
        failed = [failure for part in self._parts for failure in _failures(part, None, reason)]
        if self._parts:  # given up on again (close() twice): what was in flight the first time is still out
            self._given_up_in_flight = len(self._parts[0])
        self._parts.clear()
        return Outcome(failed=failed)

    def _retry(self, reason: str, retry_after: float | None) -> Outcome:
        self._retries += 1
        return Outcome(retry_in_s=self._backoff.delay_s(self._retries, retry_after, self._rng), retry_reason=reason)

    def _settle(self) -> None:
        self._parts.popleft()
        self._retries = 0


def _failures(part: list[Item], status: int | None, reason: str) -> list[FeedbackFailure]:
    return [FeedbackFailure(decision, reward, status, reason) for decision, reward in part]


def given_up(in_flight: Delivery | None, buffered: list[Item]) -> Outcome:
    """What close() fails at its deadline: the delivery on its way (if any), then what is still buffered."""
    outcome = Outcome() if in_flight is None else in_flight.abandon(NOT_ACKNOWLEDGED_IN_TIME)
    outcome.failed.extend(_failures(buffered, None, NOT_ACKNOWLEDGED_IN_TIME))
    return outcome
