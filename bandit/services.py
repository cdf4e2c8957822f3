"""The long-lived objects of one service process, created and closed by the app lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from bandit.decision_ids import DecisionSigner
from bandit.exceptions import StoreUnavailable
from bandit.settings import Settings
from bandit.store import ExperimentStore
from proxy.app import ProxyApp
from proxy.clients import make_upstream_client
from proxy.health import ArmHealth, HealthProber
from proxy.recorder import DecisionRecorder
from proxy.registry import SnapshotRegistry, running
from proxy.shadow import ShadowMirror
from proxy.sticky import StickyAssignments
from proxy.upstream import Timeouts

log = logging.getLogger("mab")
#: How long start-up waits for Redis before giving up with a clear message.
REDIS_STARTUP_WAIT_S = 30.0


@dataclass(slots=True)
class Services:
    settings: Settings
    redis: Redis
    store: ExperimentStore
    registry: SnapshotRegistry
    recorder: DecisionRecorder
    health: ArmHealth
    signer: DecisionSigner
    proxy: ProxyApp
    rng: np.random.Generator
    mirror: ShadowMirror


async def _decision_secret(settings: Settings, store: ExperimentStore) -> bytes:
    if settings.secret:
        return settings.secret.encode()
    deadline = asyncio.get_running_loop().time() + REDIS_STARTUP_WAIT_S
    while True:
        try:
            secret = await store.shared_secret()
        except StoreUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"Redis at {settings.redis_url} did not answer within {REDIS_STARTUP_WAIT_S:.0f} s "
                    "and BANDIT_SECRET is not set"
                ) from None
            await asyncio.sleep(0.5)
        else:
            log.info("BANDIT_SECRET not set: signing decision ids with the secret shared through Redis")
            return secret


def _probe_targets(registry: SnapshotRegistry) -> list[tuple[str, str]]:
    """(base url, health path) of every arm that asks to be probed, across this process's experiments."""
    return [
        (arm.url, arm.health_path)
        for snapshot in list(registry.snapshots.values())
        for arm in snapshot.experiment.arms
        if arm.health_path is not None
    ]


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Connect to Redis, start the background loops, and tear everything down on exit."""
    redis: Redis = Redis.from_url(
        settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=10
    )
    timeouts = Timeouts(connect_s=settings.upstream_connect_timeout_s, read_s=settings.upstream_timeout_s)
    client = make_upstream_client(settings.upstream_client, timeouts)
    try:
        store = ExperimentStore(redis)
        rng = np.random.default_rng()
        signer = DecisionSigner([await _decision_secret(settings, store)])
        registry = SnapshotRegistry(store, rng, settings.refresh_interval_s)
        recorder = DecisionRecorder(store, settings.flush_interval_s)
        health = ArmHealth()
        mirror = ShadowMirror(client, recorder, health, queue_size=settings.shadow_queue_size)
        proxy = ProxyApp(
            registry,
            recorder,
            client,
            signer,
            health,
            settings.max_body_bytes,
            timeouts,
            mirror=mirror,
            sticky=StickyAssignments(ttl_s=settings.sticky_ttl_s),
        )
        services = Services(settings, redis, store, registry, recorder, health, signer, proxy, rng, mirror)
        with contextlib.suppress(StoreUnavailable):
            await registry.refresh_all()
        prober = HealthProber(health, interval_s=settings.probe_interval_s)
        flusher = asyncio.create_task(recorder.run())
        background = [
            flusher,
            asyncio.create_task(mirror.run()),
            asyncio.create_task(prober.run(lambda: _probe_targets(registry))),
        ]
        async with running(registry):
            try:
                yield services
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                try:
                    await recorder.flush()
                except StoreUnavailable:
                    log.error("Redis unavailable at shutdown: unflushed decision counts are lost")
    finally:
        await client.close()
        await redis.aclose()
