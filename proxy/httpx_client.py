"""httpx as the upstream client: the reference implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from proxy.exceptions import UpstreamTimeout, UpstreamUnreachable
from proxy.upstream import Headers, Origin


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

    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: bytes, timeout_s: float
    ) -> HttpxResponse:
        path, _, query = target.partition("?")
        url = httpx.URL(
            scheme=origin.scheme,
            host=origin.host,
            port=origin.port,
            path=origin.base_path + path,
            query=query.encode() if query else None,
        )
        request = self._client.build_request(method, url, headers=headers, content=body, timeout=timeout_s)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as error:
            raise UpstreamTimeout(str(error)) from error
        except httpx.HTTPError as error:
            raise UpstreamUnreachable(str(error)) from error
        return HttpxResponse(response)

    async def close(self) -> None:
        await self._client.aclose()
