"""The client's request body: read whole before any upstream is asked when it is small,
streamed when it is not, and never waited on for longer than the body timeouts allow.

Reading a small body first means a client that uploads slowly holds only its own
connection to the proxy, never a connection to an upstream (the pool every other request
needs). A larger body streams, so it is not held in memory; those are the requests the
per-arm cap on streamed uploads (`proxy.admission`) is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

from proxy.exceptions import BodyTimeout, BodyTooLarge, ClientDisconnected
from proxy.wait_watch import WaitTimedOut, WaitWatch

Receive = Callable[[], Awaitable[dict[str, Any]]]
#: What can go wrong with a client's upload on its side.
UploadFault = BodyTooLarge | BodyTimeout | ClientDisconnected


class BodyLimits(NamedTuple):
    """How large a body may be, how much of it is read before forwarding, how slowly it may come."""

    max_bytes: int
    # Bodies up to this size are read whole before an upstream connection is taken.
    buffer_bytes: int
    # The longest pause between two pieces of a body, and the longest the whole body may take.
    idle_s: float
    total_s: float


class BufferBudget:
    """The bytes of request bodies this process holds while it reads them before forwarding.

    Each body read in several pieces counts until `release`; past `limit` in all, a body being
    read goes on as a stream (under the per-arm cap on streamed uploads) instead of being held,
    so slow clients cannot make the process hold `buffer_bytes` each without bound. A body that
    came in one message is not counted: the server has read it whole already.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._bodies: dict[int, int] = {}

    def keep(self, body: bytes, size: int) -> None:
        """`body`, read whole, holds `size` bytes (counted in `held` already) until released."""
        self._bodies[id(body)] = size

    def release(self, body: bytes | StreamedBody) -> None:
        """`body` is forwarded (or given up): what it held is free again."""
        self.held -= self._bodies.pop(id(body), 0)


class StreamedBody:
    """Reads body messages only as the upstream client asks for them.

    Nothing is held beyond the chunk in flight, so a 50 MB upload costs a few chunks of
    memory. The limits hold as bytes arrive; `started` tells whether any chunk has been
    handed on (after which the request cannot be replayed to another arm), and `fault`
    keeps the client's own failure (too large, too slow, gone), which the upstream client
    reports only as a failed request, so that it is not taken for the arm's.
    """

    def __init__(self, receive: Receive, first_chunk: bytes, limits: BodyLimits, deadline: float) -> None:
        self._receive = receive
        self._first = first_chunk
        self._limits = limits
        self._deadline = deadline
        self.size = len(first_chunk)
        self.started = False
        # The client sent all of it: from then on a slow upstream is the arm's doing, not the client's.
        self.complete = False
        self.fault: UploadFault | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        if self._first:
            yield self._first
        while True:
            try:
                message = await _next_message(self._receive, self._limits, self._deadline)
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected("the client went away mid-upload")
                chunk = message.get("body", b"")
                self.size += len(chunk)
                if self.size > self._limits.max_bytes:
                    raise BodyTooLarge
            except (BodyTooLarge, BodyTimeout, ClientDisconnected) as fault:
                self.fault = fault
                raise
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                self.complete = True
                return


async def _next_message(receive: Receive, limits: BodyLimits, deadline: float) -> dict[str, Any]:
    """The next body message, within the idle timeout and the whole body's deadline."""
    loop = asyncio.get_running_loop()
    idle_until = loop.time() + limits.idle_s
    try:
        async with asyncio.timeout_at(min(idle_until, deadline)):
            return await receive()
    except TimeoutError:
        raise BodyTimeout.past(limits.idle_s, limits.total_s, whole=loop.time() >= deadline) from None


async def read_request_body(
    receive: Receive,
    limits: BodyLimits,
    declared: int | None,
    watch: WaitWatch,
    budget: BufferBudget,
    read_whole: bool = False,
) -> bytes | StreamedBody:
    """The whole body when it fits `limits.buffer_bytes` (and `declared`, the Content-Length,
    does not say otherwise), else a stream of it that starts with what was read so far.

    The first read, which nearly always finds its message waiting, is timed by `watch`; the
    rare later ones each by a timeout of their own. `read_whole`: `receive` reads a small body in
    one call (granian's, see proxy/rsgi.py), which cannot tell a pause from a slow steady upload,
    so that read gets the whole body's time. A body held whole in several pieces counts against
    `budget` until the caller releases it."""
    now = asyncio.get_running_loop().time()
    deadline = now + limits.total_s
    whole = read_whole or limits.total_s <= limits.idle_s
    try:
        message = await watch.wait(receive, deadline if whole else now + limits.idle_s)
    except WaitTimedOut:
        raise BodyTimeout.past(limits.idle_s, limits.total_s, whole=whole) from None
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("the client went away before sending its body")
    chunk: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(chunk) > limits.max_bytes:
            raise BodyTooLarge
        return chunk
    if declared is not None and declared > limits.buffer_bytes:
        # Too large to hold: it streams from the start, under the cap on streamed uploads.
        return StreamedBody(receive, chunk, limits, deadline)
    parts = [chunk]
    size = len(chunk)
    budget.held += size
    try:
        while size <= limits.buffer_bytes and budget.held <= budget.limit:
            message = await _next_message(receive, limits, deadline)
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("the client went away while sending its body")
            chunk = message.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            budget.held += len(chunk)
            if not message.get("more_body", False):
                if size > limits.max_bytes:
                    raise BodyTooLarge
                body = b"".join(parts)
                budget.keep(body, size)
                size = 0  # now the body's to give back, not this reader's
                return body
    finally:
        budget.held -= size
    # Outgrew the buffer (no length was declared), or the process holds all it may: on as a stream.
    return StreamedBody(receive, b"".join(parts), limits, deadline)
