"""Errors of the forwarding path.

BadTarget (ValueError)        400  the requested path or query cannot be forwarded
BodyTooLarge                  413  the request body passed BANDIT_MAX_BODY_BYTES
BodyTimeout                   408  the request body paused or took too long (BANDIT_BODY_*TIMEOUT)
ClientDisconnected                 the client went away before or while sending its body
UpstreamError                      the upstream did not give a response
├── UpstreamUnreachable       502  connection reset, protocol error
│   └── UpstreamConnectFailed 502  no connection at all (refused, no route): nothing was sent
└── UpstreamTimeout           504  read timed out
    └── UpstreamConnectTimeout 504 the connection was not made in time: nothing was sent

Each client translates its own library's errors into these at one boundary
(its ``send``); details go to the log, never to the caller. `retryable` marks the
failures after which no byte reached the upstream, so the request may go to another arm.
"""

from __future__ import annotations

import re

# A URL's query in a message: "http://host/path?" then everything up to a space or quote.
_URL_QUERY = re.compile(r"""(\bhttps?://[^\s?#'"<>]*)\?[^\s#'"<>]*""")


#: The failure kind of an answer with a 5xx status (the others are UpstreamError.kind).
HTTP_5XX = "http_5xx"


class UpstreamError(Exception):
    status_code = 502
    message = "upstream failed"
    retryable = False
    # The `kind` label of mab_upstream_errors_total.
    kind = "failed"

    def __str__(self) -> str:
        # Client libraries quote the upstream URL in their messages, and a caller's query may
        # carry its own credentials (?api_key=...): the log gets the URL without its query.
        return _URL_QUERY.sub(r"\1?<query>", super().__str__())


class UpstreamUnreachable(UpstreamError):
    status_code = 502
    message = "upstream is unreachable"
    kind = "reset"


class UpstreamConnectFailed(UpstreamUnreachable):
    message = "upstream refused the connection"
    retryable = True
    kind = "connect"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    message = "upstream timed out"
    kind = "timeout"


class UpstreamConnectTimeout(UpstreamTimeout):
    message = "upstream did not accept the connection in time"
    retryable = True
    kind = "connect_timeout"


class BadTarget(ValueError):
    """The requested path cannot be forwarded."""


class BodyTooLarge(Exception):
    """The request body passed the proxy's limit."""


class BodyTimeout(Exception):
    """The client sent its body too slowly: a pause past the idle timeout, or longer in all than the body timeout."""

    @classmethod
    def past(cls, idle_s: float, total_s: float, whole: bool) -> BodyTimeout:
        if whole:
            return cls(f"the request body took more than {total_s:g} s to arrive (BANDIT_BODY_TIMEOUT)")
        return cls(f"the request body paused for more than {idle_s:g} s (BANDIT_BODY_IDLE_TIMEOUT)")


class ClientDisconnected(Exception):
    """The client went away before or while sending its body."""
