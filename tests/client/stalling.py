"""A service that takes requests and keeps them unanswered, as a hung server (or a network that
lost its answers) does: raw sockets on loopback, since an HTTP server library answers what it reads.

Requests to a path in `answer_after_s` are answered 200 `{}` that many seconds after they came;
every other request (POST /feedback) is held until `answer_held()`, then answered 202 with every
reward accepted, or never, when the server closes first.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import BinaryIO


class StallingServer:
    def __init__(self, answer_after_s: Mapping[str, float] | None = None) -> None:
        self._answer_after_s = dict(answer_after_s or {})
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        #: Requests read whole so far (answered or not).
        self.requests = 0
        #: The client's port of the connection each of them came on.
        self.ports: list[int] = []
        self._released = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, name="stalling-server", daemon=True).start()

    def answer_held(self) -> None:
        """Answer every feedback post held so far, and the later ones at once."""
        self._released.set()

    def close(self) -> None:
        """Stop: every connection is closed, the requests still held get no answer."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):  # the client may have closed it already
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()

    def __enter__(self) -> StallingServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        port = connection.getpeername()[1]
        reader = connection.makefile("rb")
        try:
            while (request := _read_request(reader)) is not None:
                path, body = request
                with self._lock:
                    self.requests += 1
                    self.ports.append(port)
                came = time.monotonic()
                if path in self._answer_after_s:
                    if self._closed.wait(max(0.0, came + self._answer_after_s[path] - time.monotonic())):
                        return
                    connection.sendall(_response(200, b"{}"))
                    continue
                while not self._released.wait(0.05):
                    if self._closed.is_set():
                        return
                items = len(json.loads(body)["items"])
                answer = {"accepted": items, "duplicate": 0, "rejected": 0, "errors": []}
                connection.sendall(_response(202, json.dumps(answer).encode()))
        except (OSError, ValueError):
            return


def _read_request(reader: BinaryIO) -> tuple[str, bytes] | None:
    """(path, body) of the next request on the connection, None once the client closed it."""
    request_line = reader.readline()
    if not request_line:
        return None
    path = request_line.split()[1].decode()
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return path, reader.read(length)


def _response(status: int, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body
