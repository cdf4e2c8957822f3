"""Reading answers off a raw socket, for tests that send what no well-behaved client would."""

from __future__ import annotations

import asyncio


async def read_answer(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """One answer as sent: its head and, by its Content-Length, its body (only the head of one
    without). b"" if none came within `timeout_s`; what came, if the connection closed first."""
    try:
        async with asyncio.timeout(timeout_s):
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return head + (await reader.readexactly(length) if length else b"")
    except asyncio.IncompleteReadError as cut_short:
        return cut_short.partial
    except (TimeoutError, ConnectionError, asyncio.LimitOverrunError):
        return b""
