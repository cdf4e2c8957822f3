"""aiohttp as the upstream client: the fallback (BANDIT_UPSTREAM_CLIENT=aiohttp), see BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from proxy.clients.base import Headers, Origin, RequestBody, Timeouts
from proxy.exceptions import (
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

_READ_CHUNK = 64 * 1024


class AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Headers = list(response.raw_headers)

    async def body(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._response.content.iter_chunked(_READ_CHUNK):
                yield chunk
        except TimeoutError as error:
            raise UpstreamTimeout(str(error)) from error
        except aiohttp.ClientError as error:
            raise UpstreamUnreachable(str(error)) from error

    async def close(self) -> None:
        self._response.release()


class AiohttpUpstreamClient:
    def __init__(self, max_connections: int = 512) -> None:
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections)
        # Bodies pass through untouched: no decompression, no default headers of aiohttp's own.
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: RequestBody, timeouts: Timeouts
    ) -> AiohttpResponse:
        path, _, query = target.partition("?")
        url = URL.build(
            scheme=origin.scheme,
            host=origin.host,
            port=origin.port,
            path=origin.base_path + path,
            query_string=query,
            encoded=True,
        )
        request_headers = CIMultiDict((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)
        try:
            response = await self._session.request(
                method,
                url,
                headers=request_headers,
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=timeouts.connect_s, sock_read=timeouts.read_s),
            )
        except aiohttp.ConnectionTimeoutError as error:
            raise UpstreamConnectTimeout(str(error)) from error
        except TimeoutError as error:
            raise UpstreamTimeout(str(error)) from error
        except aiohttp.ClientConnectorError as error:
            raise UpstreamConnectFailed(str(error)) from error
        except aiohttp.ClientError as error:
            raise UpstreamUnreachable(str(error)) from error
        except UpstreamError:
            raise
        except Exception as error:  # e.g. the request body's own stream failed mid-way
            raise UpstreamUnreachable(f"{type(error).__name__}: {error}") from error
        return AiohttpResponse(response)

    async def close(self) -> None:
        await self._session.close()
