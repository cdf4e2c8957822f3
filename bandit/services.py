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
from proxy.aiohttp_client import AiohttpUpstreamClient
from proxy.app import ProxyApp
from proxy.health import ArmHealth
from proxy.recorder import DecisionRecorder
from proxy.registry import SnapshotRegistry, running

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


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Connect to Redis, start the background loops, and tear everything down on exit."""
    redis: Redis = Redis.from_url(
        settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=10
    )
    client = AiohttpUpstreamClient()
    try:
        store = ExperimentStore(redis)
        rng = np.random.default_rng()
        signer = DecisionSigner([await _decision_secret(settings, store)])
        registry = SnapshotRegistry(store, rng, settings.refresh_interval_s)
        recorder = DecisionRecorder(store, settings.flush_interval_s)
        health = ArmHealth()
        proxy = ProxyApp(
            registry, recorder, client, signer, health, settings.max_body_bytes, settings.upstream_timeout_s
        )
        services = Services(settings, redis, store, registry, recorder, health, signer, proxy, rng)
        with contextlib.suppress(StoreUnavailable):
            await registry.refresh_all()
        flusher = asyncio.create_task(recorder.run())
        async with running(registry):
            try:
                yield services
            finally:
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
                try:
                    await recorder.flush()
                except StoreUnavailable:
                    log.error("Redis unavailable at shutdown: unflushed decision counts are lost")
    finally:
        await client.close()
        await redis.aclose()
