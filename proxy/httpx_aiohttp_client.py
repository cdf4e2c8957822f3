"""httpx's API over aiohttp's connection pool (the httpx-aiohttp transport).

The transport maps aiohttp's errors to httpx's coarsely (a refused or dropped connection
comes out as ``httpx.ConnectTimeout``), so errors are translated here from the aiohttp
error underneath when there is one, and only otherwise from the httpx one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from proxy.exceptions import (
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.httpx_client import httpx_url
from proxy.upstream import Headers, Origin, RequestBody, Timeouts


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


class HttpxAiohttpResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Headers = list(response.headers.raw)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except Exception as error:
            raise _translate(error) from error

    async def close(self) -> None:
        await self._response.aclose()


class HttpxAiohttpUpstreamClient:
    def __init__(self, max_connections: int = 512) -> None:
        # The transport would build a session with aiohttp's default headers: give it one without.
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections)
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(
            transport=AiohttpTransport(limits=limits, trust_env=False, client=session),
            follow_redirects=False,
            trust_env=False,
        )
        # httpx's own defaults (Accept, Accept-Encoding, Connection, User-Agent) are not ours to add.
        self._client.headers.clear()

    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: RequestBody, timeouts: Timeouts
    ) -> HttpxAiohttpResponse:
        url = httpx_url(origin, target)
        timeout = httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s)
        try:
            request = self._client.build_request(method, url, headers=headers, content=body, timeout=timeout)
            response = await self._client.send(request, stream=True)
        except Exception as error:  # httpx's, aiohttp's, or the request body's own stream failing mid-way
            raise _translate(error) from error
        return HttpxAiohttpResponse(response)

    async def close(self) -> None:
        await self._client.aclose()
