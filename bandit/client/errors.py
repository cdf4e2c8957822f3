"""What the client raises: the service refused (`ApiError`) or could not be reached (`Unreachable`)."""

from __future__ import annotations

import email.utils
import math
import time

import httpx


class ClientError(Exception):
    """Base of every error of the client library."""


class ApiError(ClientError):
    """The service (or the model behind an invoke) answered with a status other than 2xx.

    `detail` is the service's own explanation (the `detail` of its JSON error body), or the body's
    text when it has none; `body` is the body decoded as JSON, else its text. `retry_after_s` is
    the answer's Retry-After in seconds, when it had one (503: Redis is away, retry then).
    """

    def __init__(self, status: int, detail: str, body: object = None, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body
        self.retry_after_s = retry_after_s

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        body = response_body(response)
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, str) or not detail:
            detail = (response.text.strip() or response.reason_phrase or "no explanation given")[:2000]
        return cls(response.status_code, detail, body, retry_after_s=retry_after_s(response.headers.get("retry-after")))


class Unreachable(ClientError):
    """The service could not be reached: connection refused or reset, a timeout, a name that does not resolve."""


def response_body(response: httpx.Response) -> object:
    """The body as JSON when it is JSON, else as text (an empty body is None)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not text
        return response.text


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds from now: either delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # unreadable: the caller's own back-off applies
    return max(0.0, when.timestamp() - time.time())
