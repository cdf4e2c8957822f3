"""The long-lived objects of one service process, created and closed by the app lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from bandit.decision_ids import DecisionSigner, SigningKey
from bandit.exceptions import StoreUnavailable
from bandit.series_layout import SeriesLayout
from bandit.settings import Settings
from bandit.shared_keys import follow_keyring, load_keyring
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


def _configured_keys(settings: Settings) -> list[SigningKey]:
    """BANDIT_SECRET signs; BANDIT_PREVIOUS_SECRET verifies until BANDIT_PREVIOUS_SECRET_UNTIL."""
    assert settings.secret
    ring = [SigningKey(settings.secret.encode())]
    if settings.previous_secret and settings.previous_secret_until is not None:
        until = settings.previous_secret_until
        ring.append(SigningKey(settings.previous_secret.encode(), not_after=until.timestamp()))
        ended = "ended" if until.timestamp() <= time.time() else "ends"
        log.info("decision ids signed with BANDIT_PREVIOUS_SECRET verify until its grace %s at %s", ended, until)
    return ring


async def _shared_keys(settings: Settings, store: ExperimentStore) -> list[SigningKey]:
    """The keyring shared through Redis, waiting for Redis to answer at start-up."""
    deadline = asyncio.get_running_loop().time() + REDIS_STARTUP_WAIT_S
    while True:
        try:
            ring = await load_keyring(store)
        except StoreUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"Redis at {settings.redis_url} did not answer within {REDIS_STARTUP_WAIT_S:.0f} s "
                    "and BANDIT_SECRET is not set"
                ) from None
            await asyncio.sleep(0.5)
        else:
            log.info("BANDIT_SECRET not set: signing decision ids with the keyring shared through Redis")
            return ring


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
        store = ExperimentStore(redis, SeriesLayout(settings.series_bucket_s, settings.series_buckets))
        rng = np.random.default_rng()
        shared_keys = not settings.secret
        signer = DecisionSigner(await _shared_keys(settings, store) if shared_keys else _configured_keys(settings))
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
        if shared_keys:
            background.append(asyncio.create_task(follow_keyring(store, signer)))
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
