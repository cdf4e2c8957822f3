"""Which headers cross the proxy, and the ones it adds."""

from __future__ import annotations

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
_SET_BY_PROXY_ON_REQUEST = frozenset({b"host", b"content-length", b"expect"})


def _connection_tokens(headers: Headers) -> set[bytes]:
    """Header names listed in Connection, which are hop-by-hop too."""
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
        if token.strip()
    }


def _end_to_end(headers: Headers, also_drop: frozenset[bytes]) -> Headers:
    drop = HOP_BY_HOP | also_drop | _connection_tokens(headers)
    return [(name, value) for name, value in headers if name.lower() not in drop]


def request_headers(headers: Headers, client_host: str | None, scheme: str) -> Headers:
    """Headers to send upstream: end-to-end ones plus X-Forwarded-For/Proto/Host."""
    forwarded = _end_to_end(headers, _SET_BY_PROXY_ON_REQUEST | {b"x-forwarded-proto", b"x-forwarded-host"})
    prior_for = [value for name, value in forwarded if name == b"x-forwarded-for"]
    forwarded = [(name, value) for name, value in forwarded if name != b"x-forwarded-for"]
    chain = b", ".join([*prior_for, client_host.encode()] if client_host else prior_for)
    if chain:
        forwarded.append((b"x-forwarded-for", chain))
    forwarded.append((b"x-forwarded-proto", scheme.encode()))
    host = next((value for name, value in headers if name == b"host"), None)
    if host is not None:
        forwarded.append((b"x-forwarded-host", host))
    return forwarded


# The server in front (uvicorn) sets its own Date and Server.
_SET_BY_PROXY_ON_RESPONSE = frozenset({b"date", b"server"})


def response_headers(headers: Headers) -> Headers:
    """Upstream response headers to pass back to the client, names lower-cased as ASGI wants."""
    return [(name.lower(), value) for name, value in _end_to_end(headers, _SET_BY_PROXY_ON_RESPONSE)]
