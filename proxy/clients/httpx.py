"""httpx as the upstream client: the reference implementation (and the base of httpx-aiohttp)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

import httpx

from proxy.clients.base import Headers, Origin, RequestBody, Timeouts
from proxy.exceptions import (
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

ErrorTranslation = Callable[[Exception], UpstreamError]


def httpx_url(origin: Origin, target: str) -> httpx.URL:
    """The URL of `target` (path and query, already percent-encoded) on `origin`, kept as given."""
    path, _, query = target.partition("?")
    return httpx.URL(
        scheme=origin.scheme,
        host=origin.host,
        port=origin.port,
        path=origin.base_path + path,
        query=query.encode() if query else None,
    )


def translate_httpx_error(error: Exception) -> UpstreamError:
    """The proxy's error for an httpx one (or for the request body's own stream failing mid-way)."""
    if isinstance(error, UpstreamError):
        return error
    if isinstance(error, httpx.ConnectTimeout):
        return UpstreamConnectTimeout(str(error))
    if isinstance(error, httpx.TimeoutException):
        return UpstreamTimeout(str(error))
    if isinstance(error, httpx.ConnectError):
        return UpstreamConnectFailed(str(error))
    if isinstance(error, httpx.HTTPError):
        return UpstreamUnreachable(str(error))
    return UpstreamUnreachable(f"{type(error).__name__}: {error}")


class HttpxResponse:
    def __init__(self, response: httpx.Response, translate: ErrorTranslation) -> None:
        self._response = response
        self._translate = translate
        self.status = response.status_code
        self.headers: Headers = list(response.headers.raw)

    async def body(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except Exception as error:
            raise self._translate(error) from error

    async def close(self) -> None:
        await self._response.aclose()


class HttpxUpstreamClient:
    def __init__(
        self,
        max_connections: int = 512,
        transport: httpx.AsyncBaseTransport | None = None,
        translate: ErrorTranslation = translate_httpx_error,
    ) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(limits=limits, transport=transport, follow_redirects=False, trust_env=False)
        self._translate = translate
        # A proxy adds no headers of its own: without this httpx sends Accept, User-Agent and more.
        self._client.headers.clear()

    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: RequestBody, timeouts: Timeouts
    ) -> HttpxResponse:
        timeout = httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s)
        try:
            request = self._client.build_request(
                method, httpx_url(origin, target), headers=headers, content=body, timeout=timeout
            )
            response = await self._client.send(request, stream=True)
        except Exception as error:  # the library's, or the request body's own stream failing mid-way
            raise self._translate(error) from error
        return HttpxResponse(response, self._translate)

    async def close(self) -> None:
        await self._client.aclose()
