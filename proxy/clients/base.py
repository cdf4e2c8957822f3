"""The small interface the proxy forwards through; implementations live beside it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an arm lives: its scheme, host, port and base path (no trailing slash)."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def from_url(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


Headers = list[tuple[bytes, bytes]]
#: A request body: whole, or streamed chunk by chunk (sent with the Content-Length the
#: headers carry, else chunked).
RequestBody = bytes | AsyncIterable[bytes]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long to wait for a connection, and for each read of the response."""

    connect_s: float
    read_s: float


class UpstreamResponse(Protocol):
    status: int
    headers: Headers

    def body(self) -> AsyncGenerator[bytes, None]:
        """The response body as it arrives, still content-encoded."""
        ...

    async def close(self) -> None: ...


class UpstreamClient(Protocol):
    """Sends one request to a configured origin; raises UpstreamError subclasses."""

    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: RequestBody, timeouts: Timeouts
    ) -> UpstreamResponse:
        """Send `method` `target` (path and query, percent-encoded) to `origin`; the body streams back.

        Raises UpstreamUnreachable when no connection could be made (nothing was sent, so the
        request may be retried elsewhere), UpstreamTimeout on a timeout, and UpstreamError
        subclasses for anything else that went wrong before the response headers arrived.
        """
        ...

    async def close(self) -> None: ...
