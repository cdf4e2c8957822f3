"""The client's request body, passed upstream whole when it is small, streamed when it is not."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from proxy.exceptions import BodyTooLarge, ClientDisconnected

Receive = Callable[[], Awaitable[dict[str, Any]]]


class StreamedBody:
    """Reads ASGI body messages only as the upstream client asks for them.

    Nothing is held beyond the chunk in flight, so a 50 MB upload costs a few chunks of
    memory. The limit is enforced as bytes arrive; `started` tells whether any chunk has
    been handed on (after which the request cannot be replayed to another arm).
    """

    def __init__(self, receive: Receive, first_chunk: bytes, limit: int) -> None:
        self._receive = receive
        self._first = first_chunk
        self._limit = limit
        self.size = len(first_chunk)
        self.started = False
        self.too_large = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        if self._first:
            yield self._first
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("the client went away mid-upload")
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > self._limit:
                self.too_large = True
                raise BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


async def read_request_body(receive: Receive, limit: int) -> bytes | StreamedBody:
    """The whole body if it came in one message (the usual small JSON), else a stream of it."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("the client went away before sending its body")
    chunk: bytes = message.get("body", b"")
    if len(chunk) > limit:
        raise BodyTooLarge
    if not message.get("more_body", False):
        return chunk
    return StreamedBody(receive, chunk, limit)
