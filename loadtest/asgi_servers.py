"""Compare ASGI servers on the service's own hot loop (invoke + feedback), one run, same machine.

    python -m loadtest.asgi_servers --duration 10

Starts the simulated models once, then the service under each server in turn on the
same Redis, and drives it with the traffic generator (16 clients, feedback on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

import httpx

from bandit.cli.local_redis import free_port
from loadtest.traffic import run_traffic

SERVERS = {
    "uvicorn (uvloop, httptools)": ["-m", "bandit", "serve"],
    "granian (asgi, uvloop)": [
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--loop",
        "uvloop",
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
        "bandit.service:create_asgi",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--redis-url", default=os.environ.get("BANDIT_REDIS_URL", "redis://127.0.0.1:6379/8"))
    args = parser.parse_args()
    models = subprocess.Popen(
        [sys.executable, "-m", "loadtest.model_server", "--arm=a:0.04", "--arm=b:0.07"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert models.stdout is not None
    urls = json.loads(models.stdout.readline())
    results = {}
    try:
        for label, command in SERVERS.items():
            port = free_port()
            env = {
                **os.environ,
                "BANDIT_ADMIN_TOKEN": "bench",
                "BANDIT_REDIS_URL": args.redis_url,
                "BANDIT_PORT": str(port),
                "BANDIT_LOG_LEVEL": "warning",
            }
            extra = ["--port", str(port)] if "granian" in label else []
            service = subprocess.Popen([sys.executable, *command, *extra], env=env)
            base = f"http://127.0.0.1:{port}"
            try:
                for _ in range(200):
                    try:
                        if httpx.get(f"{base}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                admin = {"Authorization": "Bearer bench"}
                httpx.delete(f"{base}/api/experiments/bench", headers=admin)
                httpx.post(
                    f"{base}/api/experiments",
                    headers=admin,
                    json={"name": "bench", "arms": [{"name": n, "url": u} for n, u in urls.items()]},
                ).raise_for_status()
                started = time.monotonic()
                tally = asyncio.run(run_traffic(base, "bench", duration_s=args.duration, concurrency=16))
                elapsed = time.monotonic() - started
                results[label] = (sum(tally.decisions.values()) / elapsed, tally.failed)
            finally:
                service.terminate()
                service.wait()
    finally:
        models.terminate()
    baseline = next(iter(results.values()))[0]
    print("server                          invokes/s (+1 feedback each)   ratio   failed   [2 cores shared]")
    for label, (rate, failed) in results.items():
        print(f"{label:<32}{rate:>12.0f}{rate / baseline:>24.2f}{failed:>9}")


if __name__ == "__main__":
    main()
