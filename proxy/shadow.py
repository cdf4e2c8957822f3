"""Shadow traffic: copies of served requests sent to shadow arms in the background.

The served request never waits for a shadow: a copy is put on a bounded queue and
forgotten. Workers send it, read and discard the answer, and count latency and errors
for the shadow arm. When the queue is full the copy is dropped and counted, so a slow
shadow can only lose mirrored traffic, never slow or grow the service.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from bandit.telemetry.metrics import ServiceMetrics
from proxy.clients.base import Headers, Origin, Timeouts, UpstreamClient
from proxy.exceptions import HTTP_5XX, UpstreamError
from proxy.health import ArmHealth
from proxy.recorder import DecisionRecorder

log = logging.getLogger("mab.proxy.shadow")


@dataclass(frozen=True, slots=True)
class MirroredRequest:
    experiment: str
    incarnation: str
    arm: str
    url: str
    origin: Origin
    method: str
    target: str
    headers: Headers
    body: bytes
    timeouts: Timeouts


class ShadowMirror:
    """A bounded queue of mirrored requests and the workers that send them."""

    def __init__(
        self,
        client: UpstreamClient,
        recorder: DecisionRecorder,
        health: ArmHealth,
        queue_size: int = 1024,
        workers: int = 16,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.recorder = recorder
        self.health = health
        self.workers = workers
        self._queue: asyncio.Queue[MirroredRequest] = asyncio.Queue(maxsize=queue_size)
        self.dropped = 0
        self.sent = 0

    @staticmethod
    def wanted(percent: float) -> bool:
        return percent >= 100.0 or random.random() * 100.0 < percent

    def offer(self, request: MirroredRequest) -> bool:
        """Queue a copy if there is room; False (and counted) when it had to be dropped."""
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            self.dropped += 1
            self.recorder.record_mirror_dropped(request.experiment, request.incarnation, request.arm)
            return False
        return True

    async def _send(self, request: MirroredRequest) -> None:
        started = time.perf_counter()
        failure: str | None = None
        connection_failed = False
        try:
            response = await self.client.send(
                request.method, request.origin, request.target, request.headers, request.body, request.timeouts
            )
            try:
                async for _ in response.body():
                    pass  # read to the end so the connection can be reused; the answer is discarded
                if response.status >= 500:
                    failure = HTTP_5XX
            finally:
                await response.close()
        except UpstreamError as error:
            failure, connection_failed = error.kind, error.retryable
            log.debug(
                "shadow arm %s of %s failed: %s",
                request.arm,
                request.experiment,
                error,
                extra={"experiment": request.experiment, "arm": request.arm},
            )
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.sent += 1
        self.recorder.record(request.experiment, request.incarnation, request.arm, latency_ms, failure)
        if self.metrics is not None:
            self.metrics.shadow(request.experiment, request.arm, "sent" if failure is None else "failed")
        self.health.observe(
            (request.experiment, request.url), failed=failure is not None, connection_failed=connection_failed
        )

    async def _work(self) -> None:
        while True:
            request = await self._queue.get()
            try:
                await self._send(request)
            except Exception:  # one bad mirror must not kill a worker
                log.exception("shadow request failed unexpectedly")
            finally:
                self._queue.task_done()

    async def run(self) -> None:
        await asyncio.gather(*(self._work() for _ in range(self.workers)))
