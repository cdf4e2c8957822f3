"""CPU per request of the proxy's own Python, with no server and no upstream client (issue 13).

    python -m loadtest.hot_path_cost [--requests 50000]

Drives `ProxyApp` through ASGI in process, with an upstream client that answers at once
from memory: what is left is the service's own code per request (path checks, the one-pass
headers, the snapshot's choice, health, the signed decision id, the relay, the recorder).
Prints µs of CPU (`time.process_time`) per request for a static arm and for three arms under
Thompson sampling, each with the Prometheus metrics off and on (issue 14; as under `mab serve`,
their values go to prometheus-client's multiprocess files: the script re-runs itself with
PROMETHEUS_MULTIPROC_DIR set to a temporary directory). Beside `loadtest.proxy_bench`'s CPU per
proxied request, it says how much of that is the service's code and how much the server and
client around it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import numpy as np

from bandit.core.counters import ArmCounters
from bandit.core.decision_ids import DecisionSigner
from bandit.core.models import Experiment
from proxy.admission import ArmSlots
from proxy.app import ProxyApp
from proxy.clients.base import Headers, Origin, RequestBody, Timeouts
from proxy.health import ArmHealth
from proxy.recorder import DecisionRecorder
from proxy.request_body import BodyLimits, BufferBudget
from proxy.snapshot import Snapshot
from proxy.wait_watch import WaitWatch

#: Set (by the re-run in `main`) before this process imported prometheus-client: metric values in files.
_MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"

ANSWER = b'{"model": "a", "prediction": 0.1234, "outcome": 0}'
REQUEST = {"type": "http.request", "body": b'{"features": [0.12, 0.5, 0.93, 0.07]}', "more_body": False}


class _Answer:
    def __init__(self) -> None:
        self.status = 200
        self.headers: Headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(ANSWER)).encode()),
            (b"date", b"Tue, 01 Dec 2026 14:00:00 GMT"),
            (b"server", b"uvicorn"),
        ]

    async def body(self) -> AsyncGenerator[bytes, None]:
        yield ANSWER

    async def close(self) -> None:
        pass


class _InstantClient:
    async def send(
        self, method: str, origin: Origin, target: str, headers: Headers, body: RequestBody, timeouts: Timeouts
    ) -> _Answer:
        return _Answer()

    async def close(self) -> None:
        pass


class _OneSnapshot:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def get(self, name: str) -> Snapshot | None:
        return self.snapshot


def _proxy(policy: str, metrics: bool) -> ProxyApp:
    names = ["a"] if policy == "static" else ["a", "b", "c"]
    experiment = msgspec.convert(
        {
            "name": "bench",
            "arms": [{"name": name, "url": f"http://127.0.0.1:9/{name}"} for name in names],
            "policy": {"kind": policy},
            "incarnation": "i1",
        },
        Experiment,
    )
    counters = ArmCounters("i1", *[np.zeros(len(names)) for _ in range(13)])
    snapshot = Snapshot.build(experiment, counters, np.random.default_rng(1), Timeouts(2.0, 30.0))
    from bandit.telemetry.metrics import ServiceMetrics

    # Counts in memory, never flushed.
    recorder = DecisionRecorder(None, 1.0, metrics=ServiceMetrics() if metrics else None)  # type: ignore[arg-type]
    return ProxyApp(
        _OneSnapshot(snapshot),  # type: ignore[arg-type]
        recorder,
        _InstantClient(),
        DecisionSigner([b"bench-key"]),
        ArmHealth(),
        BodyLimits(max_bytes=1 << 24, buffer_bytes=1 << 20, idle_s=10.0, total_s=60.0),
        ArmSlots(max_inflight=256, max_streamed=16),
        WaitWatch(),
        BufferBudget(1 << 28),
    )


async def _cost(policy: str, metrics: bool, requests: int) -> float:
    proxy = _proxy(policy, metrics)
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/invoke/bench/predict",
        "raw_path": b"/invoke/bench/predict",
        "query_string": b"",
        "scheme": "http",
        "client": ("127.0.0.1", 5555),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-length", b"37"), (b"content-type", b"application/json")],
    }

    async def receive() -> dict[str, Any]:
        return REQUEST

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(2_000):  # warm-up
        await proxy(scope, receive, send)
    started = time.process_time()
    for _ in range(requests):
        await proxy(scope, receive, send)
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    if not os.environ.get(_MULTIPROCESS):
        # prometheus-client picks where values live when it is imported: run again with the directory set.
        os.environ[_MULTIPROCESS] = tempfile.mkdtemp(prefix="mab-hot-path-metrics-")
        os.execv(sys.executable, [sys.executable, "-m", "loadtest.hot_path_cost", *sys.argv[1:]])
    for policy in ("static", "thompson"):
        # Interleaved, twice each: the difference is the metrics' cost, the spread the noise.
        costs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(2):
            for metrics in (False, True):
                costs[metrics].append(asyncio.run(_cost(policy, metrics, args.requests)))
        off, on = min(costs[False]), min(costs[True])
        print(
            f"{policy:<9} metrics off {off:6.1f}  on {on:6.1f} µs CPU per request in ProxyApp"
            f" (+{on - off:.1f} µs; best of 2 each; no server, no client; one process)"
        )


if __name__ == "__main__":
    main()
