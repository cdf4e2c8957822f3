"""What the data-plane calls return: an invocation with its decision, and the service's account of rewards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import httpx
import msgspec

from bandit.client.errors import ApiError

#: Response headers the proxy adds to every answer of a model version (docs/design.md, "The HTTP contract").
DECISION_HEADER = "x-bandit-decision"
ARM_HEADER = "x-bandit-arm"
EXPERIMENT_HEADER = "x-bandit-experiment"


@dataclass(frozen=True, slots=True)
class Invocation:
    """One answer to `/invoke/{experiment}/...`.

    `decision` is set only when a model version answered (whatever its status): that decision can
    be rewarded. When mab answered by itself (404 unknown experiment, 503 no arm has room, 502/504
    the chosen arm failed, 4xx a request it will not forward) there is no decision; `arm` may
    still name the arm that failed.
    """

    response: httpx.Response
    decision: str | None
    arm: str | None
    experiment: str | None

    @classmethod
    def from_response(cls, response: httpx.Response) -> Invocation:
        headers = response.headers
        return cls(response, headers.get(DECISION_HEADER), headers.get(ARM_HEADER), headers.get(EXPERIMENT_HEADER))

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    @property
    def content(self) -> bytes:
        return self.response.content

    @property
    def text(self) -> str:
        return self.response.text

    def json(self, **kwargs: Any) -> Any:
        return self.response.json(**kwargs)

    @property
    def served(self) -> bool:
        """A model version answered (any status), so `decision` can be rewarded."""
        return self.decision is not None

    @property
    def ok(self) -> bool:
        """A model version answered with a 2xx."""
        return self.served and self.response.is_success

    def raise_for_status(self) -> Invocation:
        """This invocation if `ok`, else ApiError with the status and the detail of whoever answered."""
        if not self.ok:
            raise ApiError.from_response(self.response)
        return self


class RejectedItem(TypedDict):
    """A reward the service refused inside an accepted batch: 403 forged id, 410 past the window,
    404 arm or experiment gone, 422 outside the reward bounds. `index` is its place in the batch."""

    index: int
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """The service's 202 answer to a batch of rewards: each one accepted, duplicate or rejected."""

    accepted: int
    duplicate: int
    rejected: int
    errors: list[RejectedItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No reward was refused (duplicates are fine: they were counted before)."""
        return self.rejected == 0

    @classmethod
    def decode(cls, response: httpx.Response) -> FeedbackResult:
        """The result in a 2xx answer; ApiError when the body is not one (something else answered)."""
        try:
            return msgspec.json.decode(response.content, type=cls)
        except msgspec.DecodeError as error:  # ValidationError is a DecodeError
            raise ApiError(
                response.status_code,
                f"the answer to POST /feedback is not a feedback result ({error}): is the URL that of a mab service?",
                response.text[:2000],
            ) from None
