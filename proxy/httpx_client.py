"""httpx as the upstream client: the reference implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from proxy.exceptions import (
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.upstream import Headers, Origin, RequestBody, Timeouts


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


class HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Headers = list(response.headers.raw)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as error:
            raise UpstreamTimeout(str(error)) from error
        except httpx.HTTPError as error:
            raise UpstreamUnreachable(str(error)) from error

    async def close(self) -> None:
        await self._response.aclose()


class HttpxUpstreamClient:
    def __init__(self, max_connections: int = 512) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)
        # A proxy adds no headers of its own: without this httpx sends Accept, User-Agent and more.
        self._client.headers.clear()

    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: RequestBody, timeouts: Timeouts
    ) -> HttpxResponse:
        url = httpx_url(origin, target)
        timeout = httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s)
        request = self._client.build_request(method, url, headers=headers, content=body, timeout=timeout)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.ConnectTimeout as error:
            raise UpstreamConnectTimeout(str(error)) from error
        except httpx.TimeoutException as error:
            raise UpstreamTimeout(str(error)) from error
        except httpx.ConnectError as error:
            raise UpstreamConnectFailed(str(error)) from error
        except httpx.HTTPError as error:
            raise UpstreamUnreachable(str(error)) from error
        except UpstreamError:
            raise
        except Exception as error:  # e.g. the request body's own stream failed mid-way
            raise UpstreamUnreachable(f"{type(error).__name__}: {error}") from error
        return HttpxResponse(response)

    async def close(self) -> None:
        await self._client.aclose()
