"""Invokes that know which service worker answered them, read from /proc (Linux).

Fresh connections spread over uvicorn's workers as the kernel pleases: twenty of them
may all land on one worker, so "every worker routes by the new config" cannot be
believed from a count of requests. Here each invoke goes over its own connection, and
the worker is the process holding the server end of it, so a check can insist on
answers from every worker.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import Counter
from pathlib import Path

#: Fresh connections tried before concluding that some worker takes none.
MAX_ATTEMPTS = 400


def invoke_on_every_worker(
    port: int, workers: list[int], experiment: str, per_worker: int, served: Counter[str]
) -> dict[int, Counter[str]]:
    """Invoke until each worker pid answered `per_worker` times: {pid: arms it chose (or "failed")}.

    Every invoke that served (those beyond a worker's quota too) is added to `served`, so the
    caller can reconcile decision counts.
    """
    answers: dict[int, Counter[str]] = {pid: Counter() for pid in workers}
    for _ in range(MAX_ATTEMPTS):
        if all(count.total() >= per_worker for count in answers.values()):
            return answers
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            arm = _invoke(connection, experiment)
            # Answered, so accepted: the server end is now a descriptor of exactly one worker.
            pid = owner_of_connection(port, connection.getsockname()[1], workers)
        if arm != "failed":
            served[arm] += 1
        if pid is not None and answers[pid].total() < per_worker:
            answers[pid][arm] += 1
    raise TimeoutError(f"{MAX_ATTEMPTS} connections did not reach every worker: {answers}")


def _invoke(connection: socket.socket, experiment: str) -> str:
    """One POST /invoke over `connection` (HTTP/1.1, kept open); the arm that served it, or "failed"."""
    request = (
        f"POST /invoke/{experiment}/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    connection.sendall(request.encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = connection.recv(65536)
        if not chunk:
            return "failed"
        reply += chunk
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
    if head[0].split()[1] != "200":
        return "failed"
    return headers.get("x-bandit-arm", "failed")


def owner_of_connection(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """The pid among `pids` holding the server end of the loopback connection from `client_port`."""
    inode = _server_inode(server_port, client_port) if client_port else None
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
    return None


def connections_per_worker(server_port: int, pids: list[int]) -> Counter[int]:
    """Open client connections to `server_port` that each worker pid holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # State 01: established (the listening socket, 0A, is every worker's).
                if int(fields[1].rsplit(":", 1)[1], 16) == server_port and fields[3] == "01":
                    inodes.add(f"socket:[{fields[9]}]")
    held: Counter[int] = Counter()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        held[pid] += 1
    return held


def _server_inode(server_port: int, client_port: int) -> str | None:
    """Inode of the socket whose local port is `server_port` and remote port `client_port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                    return inode
    return None
