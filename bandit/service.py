"""The composition root: builds the parts of one service process and wires the proxy to the HTTP API.

This is the only module that imports both :mod:`proxy` and :mod:`bandit.api` (the layering
contract in pyproject.toml checks it). The lifespan builds every long-lived object once,
with its dependencies passed in; each handler then receives the ones it names through one
Litestar provider per dependency (see `_PROVIDED`), never a bag of everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from litestar import Litestar, asgi
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig

from bandit import __version__
from bandit.api.auth import admin_guard
from bandit.api.errors import http_error, service_error, unexpected_error, validation_error
from bandit.api.ingest import FeedbackIntake
from bandit.api.metrics import MetricsExposition
from bandit.api.openapi import StrictStructSchemaPlugin
from bandit.api.routes import api_routes
from bandit.api.stats import StatsMemo
from bandit.asgi_bridge import Lifespan, serve_asgi
from bandit.autopilot import Autopilot
from bandit.core.decision_ids import DecisionSigner
from bandit.core.errors import MabError, StoreUnavailable
from bandit.core.keyring import SigningKey
from bandit.core.models import Experiment
from bandit.core.settings import Settings, load_settings
from bandit.dashboard.live import StatsCache
from bandit.dashboard.routes import dashboard_routes
from bandit.dashboard.sampler import SAMPLE_INTERVAL_S, SeriesSampler
from bandit.store.connection import masked_url
from bandit.store.keyring import KeyringStore
from bandit.store.redis_store import RedisStore
from bandit.store.series import SeriesLayout
from bandit.telemetry.metrics import ServiceMetrics
from bandit.telemetry.tracing import tracer_from_environment
from proxy.admission import ArmSlots
from proxy.app import ProxyApp, error_answer
from proxy.clients import make_upstream_client
from proxy.clients.base import Timeouts
from proxy.health import ArmHealth, HealthProber
from proxy.recorder import DecisionRecorder
from proxy.registry import SnapshotRegistry, running
from proxy.request_body import BodyLimits, BufferBudget
from proxy.rsgi import RsgiResponder, serve_rsgi
from proxy.shadow import ShadowMirror
from proxy.sticky import StickyAssignments
from proxy.wait_watch import WaitWatch

log = logging.getLogger("mab")
#: How long start-up waits for Redis before giving up with a clear message.
REDIS_STARTUP_WAIT_S = 30.0


@dataclass(slots=True)
class Parts:
    """The long-lived objects that handlers and the front door use (the recorder, mirror and loops
    run inside `open_parts`)."""

    settings: Settings
    store: RedisStore
    signer: DecisionSigner
    registry: SnapshotRegistry
    health: ArmHealth
    proxy: ProxyApp
    stats_cache: StatsCache
    feedback_intake: FeedbackIntake
    # None when BANDIT_METRICS is false.
    metrics_exposition: MetricsExposition | None


#: What a handler may name as a parameter, and the part each name is: one provider per dependency.
_PROVIDED: dict[str, Callable[[Parts], Any]] = {
    "settings": lambda parts: parts.settings,
    "store": lambda parts: parts.store,
    "experiments": lambda parts: parts.store.experiments,
    "counters": lambda parts: parts.store.counters,
    "series_store": lambda parts: parts.store.series,
    "signer": lambda parts: parts.signer,
    "routing": lambda parts: parts.registry,
    "health": lambda parts: parts.health,
    "stats_cache": lambda parts: parts.stats_cache,
    "stats_memo": lambda parts: parts.stats_cache.memo,
    "feedback_intake": lambda parts: parts.feedback_intake,
    "metrics_exposition": lambda parts: parts.metrics_exposition,
    "decision_log": lambda parts: parts.store.decision_log,
}


def _configured_keyring(settings: Settings) -> list[SigningKey]:
    """BANDIT_SECRET signs; BANDIT_PREVIOUS_SECRET verifies until BANDIT_PREVIOUS_SECRET_UNTIL."""
    assert settings.secret
    ring = [SigningKey(settings.secret.encode())]
    if settings.previous_secret and settings.previous_secret_until is not None:
        until = settings.previous_secret_until
        ring.append(SigningKey(settings.previous_secret.encode(), not_after=until.timestamp()))
        ended = "ended" if until.timestamp() <= time.time() else "ends"
        log.info("decision ids signed with BANDIT_PREVIOUS_SECRET verify until its grace %s at %s", ended, until)
    return ring


async def _shared_keyring(settings: Settings, keyring: KeyringStore) -> list[SigningKey]:
    """The keyring shared through Redis, waiting for Redis to answer at start-up."""
    deadline = asyncio.get_running_loop().time() + REDIS_STARTUP_WAIT_S
    while True:
        try:
            ring = await keyring.load()
        except StoreUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"Redis at {masked_url(settings.redis_url)} did not answer within {REDIS_STARTUP_WAIT_S:.0f} s "
                    "and BANDIT_SECRET is not set"
                ) from None
            await asyncio.sleep(0.5)
        else:
            log.info("BANDIT_SECRET not set: signing decision ids with the keyring shared through Redis")
            return ring


def body_limits(settings: Settings) -> BodyLimits:
    """The proxy's limits on request bodies (also the bridge's timeouts under granian)."""
    return BodyLimits(
        max_bytes=settings.max_body_bytes,
        buffer_bytes=min(settings.buffer_body_bytes, settings.max_body_bytes),
        idle_s=settings.body_idle_timeout_s,
        total_s=settings.body_timeout_s,
    )


def _log_feedback_access(settings: Settings) -> None:
    """Say who may post rewards: an open feedback API is a choice that must be seen in the log."""
    if settings.feedback_token:
        return
    if settings.feedback_open:
        log.warning(
            "FEEDBACK IS OPEN (BANDIT_FEEDBACK_OPEN=true, no BANDIT_FEEDBACK_TOKEN): anyone who can reach "
            "this service can reward the decisions they were served and so steer traffic to the arm they want"
        )
    elif settings.admin_token:
        log.info("BANDIT_FEEDBACK_TOKEN not set: feedback needs the admin token")
    else:
        log.warning("feedback is closed: neither BANDIT_FEEDBACK_TOKEN nor BANDIT_ADMIN_TOKEN is set")


def _probe_targets(registry: SnapshotRegistry) -> list[tuple[str, str]]:
    """(base url, health path) of every arm that asks to be probed, across this process's experiments."""
    return [
        (arm.url, arm.health_path)
        for experiment in registry.experiments()
        for arm in experiment.arms
        if arm.health_path is not None
    ]


@contextlib.asynccontextmanager
async def open_parts(settings: Settings) -> AsyncIterator[Parts]:
    """Connect to Redis, build every part, run the background loops, and tear everything down on exit."""
    store = RedisStore.from_settings(settings, SeriesLayout(settings.series_bucket_s, settings.series_buckets))
    timeouts = Timeouts(connect_s=settings.upstream_connect_timeout_s, read_s=settings.upstream_timeout_s)
    client = make_upstream_client(settings.upstream_client, timeouts)
    tracer = tracer_from_environment()
    try:
        use_shared_keyring = not settings.secret
        ring = await _shared_keyring(settings, store.keyring) if use_shared_keyring else _configured_keyring(settings)
        signer = DecisionSigner(ring)
        registry = SnapshotRegistry(store.experiments, np.random.default_rng(), settings.refresh_interval_s, timeouts)
        metrics = ServiceMetrics() if settings.metrics else None
        recorder = DecisionRecorder(
            store.counters,
            settings.flush_interval_s,
            on_counted=registry.note_served,
            metrics=metrics,
            decision_log=store.decision_log,
        )
        health = ArmHealth()
        mirror = ShadowMirror(client, recorder, health, queue_size=settings.shadow_queue_size, metrics=metrics)
        body_watch = WaitWatch()
        proxy = ProxyApp(
            registry,
            recorder,
            client,
            signer,
            health,
            body_limits(settings),
            ArmSlots(settings.arm_max_inflight, settings.arm_max_streamed_uploads),
            body_watch,
            BufferBudget(settings.max_buffered_bytes),
            mirror=mirror,
            sticky=StickyAssignments(ttl_s=settings.sticky_ttl_s),
            tracer=tracer,
        )
        # Stats are recomputed only when their inputs change, shared by the stats endpoint, every
        # watcher and the sampler; the dashboard reads them at most once per events interval.
        stats_memo = StatsMemo(store.series, health)
        stats_cache = StatsCache(stats_memo, store.series, max_age_s=settings.events_interval_s * 0.9)
        sampler = SeriesSampler(store.series, stats_cache, registry, interval_s=SAMPLE_INTERVAL_S)
        experiments = store.experiments

        async def find_experiment(name: str) -> Experiment:
            return registry.experiment(name) or await experiments.get(name)

        intake = FeedbackIntake(
            signer, store.counters, find_experiment, registry.note_rewarded, metrics, store.decision_log
        )
        with contextlib.suppress(StoreUnavailable):
            await registry.refresh_all()
        prober = HealthProber(health, interval_s=settings.probe_interval_s)
        autopilot = Autopilot(
            experiments, store.autopilot, store.series, stats_memo, registry, settings.autopilot_interval_s
        )
        background = [
            asyncio.create_task(autopilot.run()),
            asyncio.create_task(recorder.run()),
            asyncio.create_task(mirror.run()),
            asyncio.create_task(prober.run(lambda: _probe_targets(registry))),
            asyncio.create_task(sampler.run()),
            asyncio.create_task(body_watch.run()),
        ]
        if use_shared_keyring:
            background.append(asyncio.create_task(store.keyring.follow(signer)))
        async with running(registry):
            try:
                exposition = (
                    None
                    if metrics is None
                    else MetricsExposition(metrics, store, stats_memo, registry, settings.metrics_max_age_s)
                )
                yield Parts(settings, store, signer, registry, health, proxy, stats_cache, intake, exposition)
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                await autopilot.release()
                try:
                    await recorder.flush()
                except StoreUnavailable:
                    log.error("Redis unavailable at shutdown: unflushed decision counts are lost")
    finally:
        if tracer is not None:
            tracer.shutdown()
        await client.close()
        await store.close()


def _provider(name: str) -> Provide:
    def provide(state: State) -> Any:
        return state[name]

    return Provide(provide, sync_to_thread=False)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the service; Redis and the upstream client are opened by its lifespan."""
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_parts(settings) as parts:
            for name, part_of in _PROVIDED.items():
                app.state[name] = part_of(parts)
            app.state.proxy = parts.proxy
            log.info("mab %s ready, state in Redis at %s", __version__, masked_url(settings.redis_url))
            _log_feedback_access(settings)
            yield

    @asgi("/invoke", is_mount=True, copy_scope=False)
    async def invoke(scope: Any, receive: Any, send: Any) -> None:
        """ANY /invoke/{experiment}/{path}: routed by the experiment's policy."""
        await scope["app"].state.proxy(scope, receive, send)

    admin = admin_guard(settings.admin_token)
    return Litestar(
        route_handlers=[invoke, *api_routes(settings, admin), *dashboard_routes(settings, admin)],
        dependencies={name: _provider(name) for name in _PROVIDED},
        lifespan=[lifespan],
        exception_handlers={
            ValidationException: validation_error,
            HTTPException: http_error,
            MabError: service_error,
            Exception: unexpected_error,
        },
        openapi_config=OpenAPIConfig(title="mab", version=__version__, path="/schema"),
        # Management and feedback bodies; the proxy reads its own (BANDIT_MAX_BODY_BYTES).
        request_max_body_size=settings.max_api_body_bytes,
        plugins=[StrictStructSchemaPlugin()],
        logging_config=None,
    )


class FrontDoor:
    """The ASGI app `mab serve` runs: /invoke/ goes straight to the proxy, the rest to Litestar.

    The proxy is raw ASGI already; skipping Litestar's router and mount for it saves tens of
    microseconds per forwarded request (BENCHMARKS.md). Until the lifespan has built the
    proxy, and for everything else, Litestar answers.
    """

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/invoke/"):
            proxy = self.app.state.get("proxy")
            if proxy is not None:
                await proxy(scope, receive, send)
                return
        await self.app(scope, receive, send)  # type: ignore[arg-type]  # a plain ASGI scope dict


def create_asgi(settings: Settings | None = None) -> FrontDoor:
    """The service as `mab serve` runs it under uvicorn (see FrontDoor)."""
    return FrontDoor(create_app(settings))


class RsgiFrontDoor:
    """The app `mab serve` runs under granian: /invoke/ through the proxy's RSGI path
    (proxy/rsgi.py), the rest through Litestar over the ASGI bridge (bandit/asgi_bridge.py).

    Granian calls `__rsgi_init__` on each worker's loop before serving and `__rsgi_del__`
    after, which run Litestar's lifespan (Redis, the proxy and the background loops).
    """

    def __init__(self, app: Litestar, body_limits: BodyLimits) -> None:
        self.app = app
        self._lifespan = Lifespan(app)  # type: ignore[arg-type]  # Litestar is an ASGI app
        self._proxy: ProxyApp | None = None
        self._body_limits = body_limits

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._lifespan.startup(loop)
        self._proxy = self.app.state.get("proxy")

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._lifespan.shutdown(loop)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if "websocket" in scope.headers.get("upgrade", "").lower():
            # granian (websockets off) passes an upgrade on as a plain request; uvicorn's protocol
            # refuses it before any route (bandit/cli/http_limits.py), and so is it refused here.
            await error_answer(RsgiResponder(protocol), 400, "WebSockets are not served", connection="close")
            return
        if self._proxy is not None and scope.path.startswith("/invoke/"):
            await serve_rsgi(self._proxy, scope, protocol)
            return
        await serve_asgi(self.app, scope, protocol, self._body_limits)  # type: ignore[arg-type]


def create_rsgi(settings: Settings | None = None) -> RsgiFrontDoor:
    """The service as `mab serve` runs it under granian (see RsgiFrontDoor)."""
    settings = settings or load_settings()
    return RsgiFrontDoor(create_app(settings), body_limits(settings))
