"""The least a Python reverse proxy on this stack can cost: the bench's floor (issue 13).

    UPSTREAM=http://127.0.0.1:9000 python -m uvicorn loadtest.floor_proxy:app
    UPSTREAM=http://127.0.0.1:9000 python -m granian --interface rsgi loadtest.floor_proxy:app

Forwards every request to `UPSTREAM` + path with the service's upstream client library
(pyreqwest), whole bodies both ways, and nothing else: no routing, no headers passed, no
streaming, no decision id, no counting, no health. `python -m loadtest.proxy_bench` runs it
as ``floor-uvicorn`` (ASGI) and ``floor-granian`` (RSGI) beside the service, so the table
shows how much of the service's CPU per request is the server and the client themselves.
Not a proxy anyone should deploy.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from pyreqwest.client import Client, ClientBuilder

Message = dict[str, Any]


class FloorProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        # Built on first use, inside the server's event loop.
        if self._client is None:
            self._client = ClientBuilder().max_connections(512).http1_only().gzip(False).no_proxy().build()
        return self._client

    async def _forward(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        request = self.client.request(method, self.upstream + path).body_bytes(body)
        response = await request.header("content-type", "application/json").build().send()
        return response.status, (await response.bytes()).to_bytes()

    async def __call__(
        self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        message = await receive()
        status, body = await self._forward(scope["method"], scope["path"], message.get("body", b""))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        status, body = await self._forward(scope.method, scope.path, await protocol())
        protocol.response_bytes(status, [("content-type", "application/json")], body)


app = FloorProxy(os.environ.get("UPSTREAM", "http://127.0.0.1:9"))
