"""httpx's API over aiohttp's connection pool (the httpx-aiohttp transport).

The transport maps aiohttp's errors to httpx's coarsely (a refused or dropped connection
comes out as ``httpx.ConnectTimeout``), so errors are translated here from the aiohttp
error underneath when there is one, and only otherwise from the httpx one.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from proxy.clients.httpx import HttpxUpstreamClient
from proxy.exceptions import (
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)


def _translate(error: Exception) -> UpstreamError:
    """The proxy's error for an httpx one, judged by the aiohttp error it wraps if any."""
    if isinstance(error, UpstreamError):
        return error
    cause = error.__cause__ if isinstance(error, httpx.HTTPError) else error
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return UpstreamConnectTimeout(str(cause))
    if isinstance(cause, TimeoutError):
        return UpstreamTimeout(f"{type(cause).__name__}: {cause}")
    if isinstance(cause, aiohttp.ClientConnectorError):
        return UpstreamConnectFailed(str(cause))
    if isinstance(cause, aiohttp.ClientError):
        return UpstreamUnreachable(f"{type(cause).__name__}: {cause}")
    if isinstance(error, httpx.ConnectTimeout):
        return UpstreamConnectTimeout(str(error))
    if isinstance(error, httpx.TimeoutException):
        return UpstreamTimeout(str(error))
    if isinstance(error, httpx.ConnectError):
        return UpstreamConnectFailed(str(error))
    return UpstreamUnreachable(f"{type(error).__name__}: {error}")


class HttpxAiohttpUpstreamClient(HttpxUpstreamClient):
    def __init__(self, max_connections: int = 512) -> None:
        # The transport would build a session with aiohttp's default headers: give it one without.
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections)
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        transport = AiohttpTransport(limits=limits, trust_env=False, client=session)
        super().__init__(max_connections, transport=transport, translate=_translate)
