"""Real processes for the tests: Redis, simulated model servers and the service, on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bandit.cli.local_redis import free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"


def wait_until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not happen within {timeout_s} s")


class ModelServers:
    """Simulated model versions in one subprocess; `urls` maps name -> base URL."""

    def __init__(self, specs: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loadtest.model_server", *[f"--arm={spec}" for spec in specs]],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("model servers failed to start")
        self.urls: dict[str, str] = json.loads(line)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class ServiceProcess:
    """`python -m bandit serve` as a subprocess, restartable on the same port."""

    def __init__(self, redis_url: str, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mab-service-{self.port}.log"

    def start(self) -> ServiceProcess:
        environ = {
            **os.environ,
            "BANDIT_ADMIN_TOKEN": ADMIN_TOKEN,
            "BANDIT_REDIS_URL": self.redis_url,
            "BANDIT_PORT": str(self.port),
            "BANDIT_REFRESH_INTERVAL": "0.1",
            "BANDIT_FLUSH_INTERVAL": "0.05",
            # Most tests post rewards as an anonymous client; tests/test_security.py checks the
            # default (feedback closed without a token) by passing BANDIT_FEEDBACK_OPEN="".
            "BANDIT_FEEDBACK_OPEN": "true",
            **self.settings,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bandit", "serve"],
                env=environ,
                cwd=ROOT,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group, so workers can be stopped together
            )
        wait_until(self._ready, 30, f"service on port {self.port} ready")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"service exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Graceful stop (SIGTERM, which flushes pending counts); the whole group is killed after 30 s."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
