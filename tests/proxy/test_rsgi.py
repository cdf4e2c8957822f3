"""The RSGI front end's own parts: the body as ASGI messages, header text, the path.

granian's protocol object is stood in for by `_Protocol`, which yields chunks the way
granian 2.8 does (empty chunks before the end, and the end even when a client broke off);
the whole path through a real granian is tests/proxy/test_proxy_behaviour.py's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from proxy.request_body import BodyLimits, BufferBudget, StreamedBody, read_request_body
from proxy.rsgi import WHOLE_BODY_BYTES, RsgiBody, raw_path, text_headers
from proxy.wait_watch import WaitWatch


class _Protocol:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.reads = 0

    async def __call__(self) -> bytes:
        self.reads += 1
        return b"".join(self.chunks)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.reads += 1
            yield chunk
            yield b""


# Bodies past 64 KiB stream, as the RSGI front reads its first piece of them.
LIMITS = BodyLimits(max_bytes=1 << 20, buffer_bytes=64 * 1024, idle_s=10.0, total_s=60.0)


async def test_a_small_declared_body_is_read_whole_in_one_call() -> None:
    protocol = _Protocol(b'{"a":', b"1}")
    body = await read_request_body(
        RsgiBody(protocol, b"7", has_body=True), LIMITS, 7, WaitWatch(), BufferBudget(1 << 28)
    )  # type: ignore[arg-type]
    assert body == b'{"a":1}' and protocol.reads == 1


async def test_a_small_chunked_body_is_read_whole_and_a_large_one_streams() -> None:
    small = await read_request_body(
        RsgiBody(_Protocol(b"ab", b"cd"), None, has_body=True), LIMITS, None, WaitWatch(), BufferBudget(1 << 28)
    )  # type: ignore[arg-type]
    assert small == b"abcd"
    big_chunks = [b"x" * 40_000] * 4
    streamed = await read_request_body(
        RsgiBody(_Protocol(*big_chunks), None, has_body=True), LIMITS, None, WaitWatch(), BufferBudget(1 << 28)
    )  # type: ignore[arg-type]
    assert isinstance(streamed, StreamedBody)
    assert len(b"".join([chunk async for chunk in streamed])) == 160_000


async def test_a_declared_body_that_ends_short_is_a_disconnect_not_a_complete_body() -> None:
    whole = RsgiBody(_Protocol(b"x" * 10), b"100", has_body=True)  # type: ignore[arg-type]
    assert (await whole())["type"] == "http.disconnect"
    declared = str(WHOLE_BODY_BYTES * 4).encode()
    streamed = RsgiBody(_Protocol(b"x" * WHOLE_BODY_BYTES, b"x" * 1000), declared, has_body=True)  # type: ignore[arg-type]
    messages = [await streamed() for _ in range(3)]
    assert [message.get("more_body") for message in messages[:2]] == [True, True]
    assert messages[2]["type"] == "http.disconnect"


async def test_no_body_is_read_when_there_is_none() -> None:
    protocol = _Protocol(b"never")
    body = RsgiBody(protocol, None, has_body=False)  # type: ignore[arg-type]
    assert await body() == {"type": "http.request", "body": b"", "more_body": False}
    assert (await body())["type"] == "http.disconnect" and protocol.reads == 0


def test_header_values_keep_their_bytes_where_granian_can_carry_them() -> None:
    utf8 = "café".encode()
    assert text_headers([(b"x-a", b"plain"), (b"x-b", utf8)]) == [("x-a", "plain"), ("x-b", "café")]
    # Latin-1 bytes that are not UTF-8 cannot come out the same (granian writes text as UTF-8).
    assert text_headers([(b"x-c", b"caf\xe9")]) == [("x-c", "caf\xe9")]


def test_the_decoded_path_is_encoded_again() -> None:
    assert raw_path("/v1/models/a b:predict") == b"/v1/models/a%20b:predict"
    assert raw_path("/caf\u00e9/%") == b"/caf%C3%A9/%25"
    assert raw_path("/a/../b") == b"/a/../b"  # left for upstream_target to refuse
