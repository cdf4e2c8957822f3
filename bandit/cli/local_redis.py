"""Start a throwaway local redis-server when none answers and the user named none."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class RedisNotFound(RuntimeError):
    """No redis-server binary on PATH."""


def answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something at host:port speaks RESP (answers PING with +PONG)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(
    port: int | None = None, workdir: Path | None = None, durable: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server on loopback and wait until it answers; returns (process, url).

    Without `durable` nothing is persisted (a throwaway server). With it, every write is
    appended to `workdir`'s AOF and fsynced before Redis replies, so a server killed and
    started again on the same `workdir` still holds every write it acknowledged.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisNotFound(
            "no redis-server on PATH: install it (apt-get install redis-server) or set BANDIT_REDIS_URL"
        )
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="mab-redis-"))
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not answers("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"
