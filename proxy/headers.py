"""Which headers cross the proxy, and the ones it adds: one pass over each header list.

Request header names arrive lower-cased (the ASGI spec says so; granian's RSGI headers come
from hyper, which lower-cases them too), so they are compared as they are. Response header
names come from the upstream client, some of which keep the upstream's case, so those are
lower-cased on the way.
"""

from __future__ import annotations

from typing import NamedTuple

from proxy.clients.base import Headers

# RFC 9110 §7.6.1 connection-specific fields, plus ones the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Dropped from a request: hop-by-hop fields, the ones the proxy sets from what it knows (the
# upstream's Host and the body's length), and forwarding headers it writes itself.
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"x-forwarded-proto", b"x-forwarded-host"}
# Connection tokens that name no header field (RFC 9110 §7.6.1 lists options as well as fields).
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive"})


class IncomingRequest(NamedTuple):
    """What the proxy needs of a request's headers, read in one pass over them."""

    # End-to-end headers for the upstream, with X-Forwarded-For/Proto/Host.
    forwarded: Headers
    # The client's Content-Length as sent (None: none, e.g. a chunked body).
    content_length: bytes | None
    # X-Bandit-Unit (a sticky unit), still forwarded upstream.
    unit: bytes | None
    # The name of a header whose value holds bytes above 0x7f, which the upstream client could
    # only re-encode (it takes text), not forward as received: such a request is refused.
    unsendable: bytes | None = None


def _listed_in_connection(value: bytes, listed: set[bytes] | None) -> set[bytes] | None:
    """Header names a Connection value lists, added to `listed` (None while there are none)."""
    for token in value.split(b","):
        token = token.strip().lower()
        if token and token not in _CONNECTION_OPTIONS:
            listed = listed or set()
            listed.add(token)
    return listed


def request_headers(headers: Headers, client_host: str | None, scheme: str) -> IncomingRequest:
    """Headers to send upstream and the few the proxy reads, in one pass."""
    forwarded: Headers = []
    prior_for: bytes | None = None
    host = content_length = unit = unsendable = None
    listed: set[bytes] | None = None
    for header in headers:
        name = header[0]
        if unsendable is None and not header[1].isascii():
            unsendable = name
        if name in _NOT_FORWARDED:
            # The first of repeated ones counts, as a lookup by name would find it.
            if name == b"content-length":
                content_length = header[1] if content_length is None else content_length
            elif name == b"host":
                host = header[1] if host is None else host
            elif name == b"connection":
                listed = _listed_in_connection(header[1], listed)
        elif name == b"x-forwarded-for":
            prior_for = header[1] if prior_for is None else prior_for + b", " + header[1]
        else:
            if name == b"x-bandit-unit" and unit is None:
                unit = header[1]
            forwarded.append(header)
    if listed:
        # Rare: a client naming its own hop-by-hop fields in Connection.
        forwarded = [header for header in forwarded if header[0] not in listed]
        if b"x-bandit-unit" in listed:
            unit = None
        if b"x-forwarded-for" in listed:
            prior_for = None
    if client_host is not None:
        prior_for = client_host.encode() if prior_for is None else prior_for + b", " + client_host.encode()
    if prior_for is not None:
        forwarded.append((b"x-forwarded-for", prior_for))
    forwarded.append((b"x-forwarded-proto", b"https" if scheme == "https" else b"http"))
    if host is not None:
        forwarded.append((b"x-forwarded-host", host))
    return IncomingRequest(forwarded, content_length, unit, unsendable)


# The server in front sets its own Date and Server; X-Bandit-* are the proxy's own (an
# upstream's would reach the client before them and could pass for the proxy's).
_NOT_RETURNED = HOP_BY_HOP | {b"date", b"server"}
_BANDIT_PREFIX = b"x-bandit-"


class UpstreamAnswer(NamedTuple):
    """The upstream response headers to pass back, and its Content-Length."""

    headers: Headers
    content_length: int | None


def response_headers(headers: Headers) -> UpstreamAnswer:
    """Upstream response headers for the client, names lower-cased as ASGI wants, in one pass."""
    returned: Headers = []
    content_length: int | None = None
    listed: set[bytes] | None = None
    for name, value in headers:
        name = name.lower()
        if name in _NOT_RETURNED:
            if name == b"connection":
                listed = _listed_in_connection(value, listed)
            continue
        if name.startswith(_BANDIT_PREFIX):
            continue
        if name == b"content-length" and value.isdigit():
            content_length = int(value)
        returned.append((name, value))
    if listed:
        returned = [header for header in returned if header[0] not in listed]
    return UpstreamAnswer(returned, content_length)
