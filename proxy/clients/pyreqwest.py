"""pyreqwest (Rust: reqwest on hyper and tokio) as the upstream client.

reqwest takes its connect and read timeouts per client, not per request, so one client
(and connection pool) is built for each distinct `Timeouts`: the service's, and each pair
an arm sets for itself. Rust does the HTTP work on tokio's own thread; its CPU is this
process's CPU too. Response bodies stream: nothing is read ahead before the headers return.

pyreqwest calls every timeout before the response headers a ``ConnectTimeoutError``,
even one while waiting for the answer to a request already sent, and a connection error
is one only when hyper's connector raised it: so both are judged here by their causes,
and a doubtful one is taken as not retryable. What cannot be helped: reqwest adds
``Accept: */*`` and its ``User-Agent`` to a request without them, the WHATWG URL parser
writes ``'`` in a query as ``%27``, and header values travel as ``str``: a byte above 0x7f
goes out UTF-8 encoded, and one in a response fails the request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    ConnectError,
    ConnectTimeoutError,
    DetailedPyreqwestError,
    PyreqwestError,
    RequestTimeoutError,
)
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from proxy.clients.base import Headers, Origin, RequestBody, Timeouts
from proxy.exceptions import (
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

# hyper's connector failed: no byte of the request was written.
_CONNECTOR_FAILED = "client error (Connect)"


def _in_connector(error: DetailedPyreqwestError) -> bool:
    return any(cause["message"] == _CONNECTOR_FAILED for cause in error.details.get("causes") or ())


def _translate(error: Exception) -> UpstreamError:
    """The proxy's error for one of pyreqwest's (or of the request body's own stream)."""
    if isinstance(error, UpstreamError):
        return error
    if isinstance(error, ConnectTimeoutError) and _in_connector(error):
        return UpstreamConnectTimeout(str(error))
    if isinstance(error, RequestTimeoutError):
        return UpstreamTimeout(str(error))
    if isinstance(error, ConnectError) and _in_connector(error):
        return UpstreamConnectFailed(str(error))
    if isinstance(error, PyreqwestError):
        return UpstreamUnreachable(str(error))
    return UpstreamUnreachable(f"{type(error).__name__}: {error}")


class PyreqwestResponse:
    def __init__(self, request: StreamRequest, response: Response) -> None:
        self._request = request
        self._response = response
        self.status = response.status
        self.headers: Headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()
        ]
        length = response.headers.get("content-length")
        self._length = int(length) if length is not None and length.isdigit() else None

    async def body(self) -> AsyncGenerator[bytes, None]:
        """The chunks as they arrive. Once a declared length has arrived the body is over: hyper
        has handed the connection back already, so no read is spent to hear it say so."""
        reader = self._response.body_reader
        remaining = self._length
        try:
            while remaining is None or remaining > 0:
                chunk = await reader.read_chunk()
                if chunk is None:
                    return
                data = chunk.to_bytes()
                if remaining is not None:
                    remaining -= len(data)
                yield data
        except PyreqwestError as error:
            raise _translate(error) from error

    async def close(self) -> None:
        await self._request.__aexit__(None, None, None)


class PyreqwestUpstreamClient:
    def __init__(self, max_idle_per_host: int = 512, timeouts: Timeouts | None = None) -> None:
        """`timeouts`: the usual ones, whose client is built now (about 5 MB, the TLS roots) rather than
        on the first request. Arms with timeouts of their own get a client each on first use.

        No cap on requests in flight here: one cap for the whole client is what let slow uploads to
        one experiment starve every other; the proxy caps them per arm instead (proxy/admission.py)."""
        self._max_idle_per_host = max_idle_per_host
        self._clients: dict[Timeouts, Client] = {}
        if timeouts is not None:
            self._client(timeouts)

    def _client(self, timeouts: Timeouts) -> Client:
        client = self._clients.get(timeouts)
        if client is None:
            # Bodies pass through untouched: no decompression (which also keeps reqwest from adding
            # Accept-Encoding), no redirects, no Referer, no proxy from the environment.
            builder = (
                ClientBuilder()
                .max_connections(None)
                .pool_max_idle_per_host(self._max_idle_per_host)
                .connect_timeout(timedelta(seconds=timeouts.connect_s))
                .read_timeout(timedelta(seconds=timeouts.read_s))
                .follow_redirects(False)
                .referer(False)
                .gzip(False)
                .brotli(False)
                .zstd(False)
                .deflate(False)
                .no_proxy()
                .http1_only()
                .http1_lower_case_headers()
            )
            client = self._clients[timeouts] = builder.build()
        return client

    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: RequestBody, timeouts: Timeouts
    ) -> PyreqwestResponse:
        url = f"{origin.scheme}://{origin.host}:{origin.port}{origin.base_path}{target}"
        try:
            builder = self._client(timeouts).request(method, url)
            builder = builder.headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers])
            if isinstance(body, bytes):
                if body:
                    builder = builder.body_bytes(body)
            else:
                builder = builder.body_stream(body)
            # Buffer nothing ahead: by default the headers would wait for 64 KiB of body or its end.
            request = builder.streamed_read_buffer_limit(0).build_streamed()
            response = await request.__aenter__()
        except Exception as error:  # pyreqwest's, or the request body's own stream failing mid-way
            raise _translate(error) from error
        try:
            return PyreqwestResponse(request, response)
        except ValueError as error:  # a header value that is not ASCII
            await request.__aexit__(None, None, None)
            raise UpstreamUnreachable(f"unreadable response header: {error}") from error

    async def close(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.close()
