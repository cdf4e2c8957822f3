"""aiosonic as the upstream client: a pure-Python HTTP/1.1 client on asyncio streams.

What its public API cannot be kept from doing (see tests/proxy/clients/test_upstream_clients.py):
it adds ``User-Agent: aiosonic/…`` when the request has none and ``Content-Type:
text/plain`` to a whole body sent without one, drops the body of a GET and a ``;…`` in the
last path segment (urllib's urlparse takes it for parameters), keeps one value
per header name (so repeated fields are combined here, RFC 9110 §5.3), cannot stream a
body of known length (so such a body is gathered first), times only the status line
(so each read of the body is timed here), ends a chunked body at an empty chunk (so none
are passed to it) and decodes response headers as UTF-8.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

from aiosonic import HTTPClient, HttpResponse
from aiosonic.connectors import TCPConnector
from aiosonic.exceptions import ConnectTimeout, ReadTimeout, RequestTimeout
from aiosonic.pools import PoolConfig
from aiosonic.timeout import Timeouts as AiosonicTimeouts

from proxy.clients.base import Headers, Origin, RequestBody, Timeouts
from proxy.exceptions import (
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)


def _translate(error: Exception) -> UpstreamError:
    """The proxy's error for one of aiosonic's (or of the request body's own stream)."""
    if isinstance(error, UpstreamError):
        return error
    if isinstance(error, ConnectTimeout):
        return UpstreamConnectTimeout(str(error))
    if isinstance(error, ReadTimeout | RequestTimeout | TimeoutError):
        return UpstreamTimeout(f"{type(error).__name__}: {error}")
    if isinstance(error, ConnectionRefusedError):
        return UpstreamConnectFailed(str(error))
    return UpstreamUnreachable(f"{type(error).__name__}: {error}")


def _combined(headers: Headers) -> list[tuple[str, str]]:
    """Headers with repeated names joined into one field, in first-seen order."""
    merged: dict[bytes, tuple[bytes, list[bytes]]] = {}
    for name, value in headers:
        key = name.lower()
        if key in merged:
            merged[key][1].append(value)
        else:
            merged[key] = (name, [value])
    return [(name.decode("latin-1"), b", ".join(values).decode("latin-1")) for name, values in merged.values()]


async def _chunks(body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    # aiosonic wants an AsyncIterator, and would send an empty chunk as the chunked body's end.
    async for chunk in body:
        if chunk:
            yield chunk


class AiosonicResponse:
    def __init__(self, response: HttpResponse, read_s: float) -> None:
        self._response = response
        self._read_s = read_s
        self.status = response.status_code
        self.headers: Headers = [(name.encode(), value.encode()) for name, value in response.raw_headers]

    async def body(self) -> AsyncGenerator[bytes, None]:
        response = self._response
        if not (response.chunked or int(response.headers.get("content-length") or 0) > 0):
            if response.body:
                yield response.body
            return
        chunks = response.read_chunks()
        try:
            while True:
                # aiosonic times only the status line: each read of the body is timed here.
                async with asyncio.timeout(self._read_s):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    return
                yield chunk
        except Exception as error:
            raise _translate(error) from error
        finally:
            await chunks.aclose()

    async def close(self) -> None:
        await self._response.aclose()


class AiosonicUpstreamClient:
    def __init__(self, max_connections: int = 512) -> None:
        pool = PoolConfig(size=max_connections, max_conn_requests=None)
        connector = TCPConnector(pool_configs={":default": pool}, use_dns_cache=True)
        self._client = HTTPClient(connector=connector, handle_cookies=False, follow=False, trust_env=False)

    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: RequestBody, timeouts: Timeouts
    ) -> AiosonicResponse:
        url = f"{origin.scheme}://{origin.host}:{origin.port}{origin.base_path}{target}"
        timeout = AiosonicTimeouts(
            sock_connect=timeouts.connect_s, sock_read=timeouts.read_s, pool_acquire=None, request_timeout=None
        )
        try:
            data: bytes | AsyncIterator[bytes] | None
            if isinstance(body, bytes):
                data = body or None
            elif any(name.lower() == b"content-length" for name, _ in headers):
                data = b"".join([chunk async for chunk in body])
            else:
                data = _chunks(body)
            response = await self._client.request(
                url, method, headers=_combined(headers), data=data, timeouts=timeout, follow=False, stream=True
            )
        except Exception as error:  # aiosonic's, the socket's, or the request body's own stream failing mid-way
            raise _translate(error) from error
        return AiosonicResponse(response, timeouts.read_s)

    async def close(self) -> None:
        await self._client.aclose()
