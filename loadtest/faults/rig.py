"""The real processes of the fault scenarios: a Redis to kill, model servers to break, the service.

Each is started on a free loopback port and stopped whole by its context manager, also
when the scenario fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bandit.cli.local_redis import free_port, start_redis
from loadtest.processes import children, control_url, model_urls, spawn, stop, wait_http


class KillableRedis:
    """A durable redis-server of our own (AOF, fsync on every write) on one port and directory,
    which can be SIGKILLed and started again on both, as a crashed Redis would be restarted."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/4"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process, _ = start_redis(self.port, self.workdir, durable=True)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; only what the AOF already holds survives."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    @contextlib.contextmanager
    def running(self) -> Iterator[KillableRedis]:
        self.start()
        try:
            yield self
        finally:
            self.kill()


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """A redis-server of our own without persistence, for scenarios that do not kill it; its URL (db 4)."""
    process, url = start_redis()
    try:
        yield url.rsplit("/", 1)[0] + "/4"
    finally:
        process.kill()
        process.wait(timeout=10)


class ModelProcess:
    """`python -m loadtest.model_server` on fixed ports, so it can be killed and started again."""

    def __init__(self, specs: list[str], control: bool = False) -> None:
        # NAME:RATE:PORT: a restarted server must come back at the URL the experiment knows.
        self.specs = [f"{spec}:{free_port()}" for spec in specs]
        self.control = control
        self.process: subprocess.Popen[str] | None = None
        self.urls: dict[str, str] = {}
        self.control_url = ""

    def start(self) -> ModelProcess:
        command = [sys.executable, "-m", "loadtest.model_server", *[f"--arm={spec}" for spec in self.specs]]
        self.process = spawn([*command, "--control"] if self.control else command)
        self.urls = model_urls(self.process)
        if self.control:
            self.control_url = control_url(self.process)
        return self

    def kill(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGKILL)
            self.process = None

    def set_behaviour(
        self, arm: str, mode: str, delay_ms: float = 0.0, health: bool = True, error_share: float = 1.0
    ) -> None:
        """Switch how `arm` answers ("ok", "error" for `error_share` of requests, or "slow" with
        `delay_ms`; its /health too unless not `health`)."""
        behaviour = {"mode": mode, "delay_ms": delay_ms, "health": health, "error_share": error_share}
        reply = httpx.put(f"{self.control_url}/arms/{arm}", json=behaviour, timeout=5)
        reply.raise_for_status()

    @contextlib.contextmanager
    def running(self) -> Iterator[ModelProcess]:
        self.start()
        try:
            yield self
        finally:
            self.kill()


@dataclass
class Service:
    """A running `mab serve`: its URL, admin token, supervisor process and log."""

    url: str
    token: str
    process: subprocess.Popen[str]
    log: Path
    worker_count: int = 1

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def create(self, experiment: dict[str, Any]) -> None:
        with self.admin() as admin:
            admin.post("/api/experiments", json=experiment).raise_for_status()

    def stats(self, name: str) -> dict[str, Any]:
        with self.admin() as admin:
            reply = admin.get(f"/api/experiments/{name}/stats")
            reply.raise_for_status()
            stats: dict[str, Any] = reply.json()
            return stats

    def arms(self, name: str) -> dict[str, dict[str, Any]]:
        """Per-arm stats by arm name."""
        return {arm["name"]: arm for arm in self.stats(name)["arms"]}

    def workers(self) -> list[int]:
        """Pids of the processes serving requests: with one worker the service process itself,
        else uvicorn's workers (the supervisor's children, not multiprocessing's resource tracker)."""
        if self.worker_count == 1:
            return [self.process.pid]
        return [pid for pid in children(self.process.pid) if b"resource_tracker" not in _cmdline(pid)]

    def stop(self) -> None:
        """SIGTERM: the workers flush their pending decision counts before exiting."""
        stop(self.process)


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


@contextlib.contextmanager
def running_service(redis_url: str, log: Path, workers: int = 1, **settings: str) -> Iterator[Service]:
    """`python -m bandit serve` on a free port against `redis_url`; BANDIT_* `settings` on top."""
    port = free_port()
    environ = {
        "BANDIT_REDIS_URL": redis_url,
        "BANDIT_ADMIN_TOKEN": secrets.token_urlsafe(16),
        # The fault scenarios post rewards without a token, as clients of an open feedback API would.
        "BANDIT_FEEDBACK_OPEN": "true",
        "BANDIT_PORT": str(port),
        "BANDIT_WORKERS": str(workers),
        "BANDIT_LOG_LEVEL": "warning",
        **settings,
    }
    process = spawn([sys.executable, "-m", "bandit", "serve"], log=log, env=environ)
    service = Service(f"http://127.0.0.1:{port}", environ["BANDIT_ADMIN_TOKEN"], process, log, workers)
    try:
        wait_http(f"{service.url}/readyz", process, "the service")
        if workers > 1:
            wait_until(lambda: len(service.workers()) == workers, 30, f"{workers} workers running")
        yield service
    finally:
        stop(process)


def wait_until(condition: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> float:
    """Poll `condition` until it holds; returns the seconds it took (TimeoutError past `timeout_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(httpx.HTTPError):
            if condition():
                return time.monotonic() - started
        time.sleep(interval_s)
    raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")


def log_dir() -> Path:
    """Where the scenarios' service logs go."""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "mab-faults"
    path.mkdir(parents=True, exist_ok=True)
    return path
