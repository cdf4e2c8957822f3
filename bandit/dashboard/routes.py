"""The live dashboard: its pages and assets, the overview data and each experiment's events.

The pages are static files of ``bandit/dashboard/static``; everything live comes from JSON and
Server-Sent Events. plotly.js is served from the installed ``plotly`` package, so the page
works offline. Reading is open unless BANDIT_DASHBOARD_PUBLIC is false; every control on the
page calls the management API, which wants the admin token. The pages carry a strict Content
Security Policy and the assets `nosniff` (`page_headers`); the events streams open at once are
capped (`stream_limit`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, Router, get
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.types import ASGIApp, ControllerRouterHandler

from bandit.api.auth import Guard
from bandit.api.parameters import ExperimentName
from bandit.core.errors import ExperimentNotFound, MabError, StoreUnavailable
from bandit.core.payloads import AuditEntry, ExperimentStats, RegretEstimate
from bandit.core.regret import regret_estimate
from bandit.core.settings import Settings
from bandit.dashboard.live import StatsCache
from bandit.dashboard.page_headers import ASSET_HEADERS, PAGE_HEADERS
from bandit.dashboard.stream_limit import EventStreamLimit
from bandit.store.experiments import ExperimentStore
from bandit.store.series import Series, SeriesStore

#: How long the overview may reuse an experiment's stats: it lists many experiments at once.
OVERVIEW_MAX_AGE_S = 5.0
#: Browsers wait this long before reconnecting a dropped event stream (sent as `retry:`).
RECONNECT_MS = 1000
#: Audit entries the experiment page shows, the newest.
AUDIT_ENTRIES_SHOWN = 50

# name -> (package, path inside it, media type). Nothing outside this table is served.
_STATIC = "bandit.dashboard.static"
# (Litestar adds `; charset=utf-8` to text/ types.)
_ASSETS = {
    "dashboard.js": (_STATIC, "dashboard.js", "text/javascript"),
    "dashboard.css": (_STATIC, "dashboard.css", "text/css"),
    "plotly.css": (_STATIC, "plotly.css", "text/css"),
    "plotly.min.js": ("plotly", "package_data/plotly.min.js", "text/javascript"),
}
_encode = msgspec.json.Encoder().encode


@functools.cache
def _file(package: str, path: str) -> bytes:
    return resources.files(package).joinpath(path).read_bytes()


def viewer_guard(public: bool, admin: Guard) -> Guard:
    """Open when the dashboard is public; otherwise the admin token, as for management."""

    def require_viewer(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if not public:
            admin(connection, handler)

    return require_viewer


def dashboard_routes(settings: Settings, admin: Guard) -> list[ControllerRouterHandler]:
    """The pages and assets, and the data behind the viewer guard."""
    # One limit per app, and each worker process builds its own app: the cap is per process.
    event_streams = EventStreamLimit.of(settings)
    return [
        overview_page,
        experiment_page,
        dashboard_asset,
        Router(
            path="/",
            guards=[viewer_guard(settings.dashboard_public, admin)],
            route_handlers=[dashboard_overview, dashboard_audit, experiment_events],
            dependencies={"event_streams": Provide(lambda: event_streams, sync_to_thread=False)},
        ),
    ]


def _page(settings: Settings, name: str) -> Response[bytes]:
    if not settings.dashboard_public:
        raise MabError(status_code=404, detail="the dashboard is not served: BANDIT_DASHBOARD_PUBLIC is false")
    return Response(_file(_STATIC, name), media_type=MediaType.HTML)


@get("/dashboard", include_in_schema=False, response_headers=PAGE_HEADERS)
async def overview_page(settings: Settings) -> Response[bytes]:
    return _page(settings, "index.html")


@get("/dashboard/{name:str}", include_in_schema=False, response_headers=PAGE_HEADERS)
async def experiment_page(name: str, settings: Settings) -> Response[bytes]:
    return _page(settings, "experiment.html")


@get("/dashboard/assets/{asset:str}", include_in_schema=False, response_headers=ASSET_HEADERS)
async def dashboard_asset(asset: str) -> Response[bytes]:
    if asset not in _ASSETS:
        raise MabError(status_code=404, detail=f"no dashboard asset {asset!r}")
    package, path, media_type = _ASSETS[asset]
    return Response(_file(package, path), media_type=media_type, headers={"Cache-Control": "max-age=3600"})


class ArmSummary(msgspec.Struct, kw_only=True):
    name: str
    shadow: bool
    health: str
    decisions_last_minute: int


class ExperimentSummary(msgspec.Struct, kw_only=True):
    name: str
    status: str
    policy: str
    arms: list[ArmSummary]
    decisions_last_minute: int
    leader: str | None
    leader_p_best: float | None
    stopping_met: bool


@get("/dashboard/data/overview", tags=["dashboard"])
async def dashboard_overview(experiments: ExperimentStore, stats_cache: StatsCache) -> list[ExperimentSummary]:
    """Every experiment: status, arms, traffic in the last minute, leader, stopping rule met.

    A handful of round trips whatever the number of experiments: the names, the stats inputs
    of those not confirmed in the last OVERVIEW_MAX_AGE_S (stats recomputed only where they
    changed), and the history buckets that may hold recent decisions.
    """
    names = await experiments.names()
    computed = await stats_cache.get_many(names, max_age_s=OVERVIEW_MAX_AGE_S)
    stats_cache.memo.keep_only(names)
    listed = list(computed.values())
    recent = await stats_cache.recent.of(listed, time.time())
    summaries = []
    for entry, decisions in zip(listed, recent, strict=True):
        stats = entry.stats
        leader = next((arm for arm in stats.arms if arm.name == stats.leader), None)
        summaries.append(
            ExperimentSummary(
                name=stats.experiment,
                status=stats.status,
                policy=stats.policy,
                arms=[
                    ArmSummary(
                        name=arm.name, shadow=arm.shadow, health=arm.health, decisions_last_minute=decisions[arm.name]
                    )
                    for arm in stats.arms
                ],
                decisions_last_minute=sum(decisions[arm.name] for arm in stats.arms if not arm.shadow),
                leader=stats.leader,
                leader_p_best=leader.p_best if leader is not None else None,
                stopping_met=stats.stopping.met,
            )
        )
    return summaries


@get("/dashboard/data/experiments/{name:str}/audit", tags=["dashboard"])
async def dashboard_audit(name: ExperimentName, experiments: ExperimentStore) -> list[AuditEntry]:
    """The newest AUDIT_ENTRIES_SHOWN changes of the experiment, oldest first, for its page."""
    return await experiments.audit(name, AUDIT_ENTRIES_SHOWN)


class EventSnapshot(msgspec.Struct, kw_only=True):
    """One event of the stream: the stats now, and the history buckets since the last event
    (all of them in the first event; the newest bucket again in every event, as it fills)."""

    stats: ExperimentStats
    series: Series
    estimate: RegretEstimate
    incarnation: str
    sent_at: float


def _resume_point(last_event_id: str | None) -> tuple[str, float] | None:
    """(incarnation, bucket start) from a reconnecting browser's Last-Event-ID, if well-formed."""
    incarnation, _, start = (last_event_id or "").partition(":")
    try:
        return (incarnation, float(start)) if incarnation else None
    except ValueError:
        return None


@get("/api/experiments/{name:str}/events", tags=["dashboard"])
async def experiment_events(
    name: ExperimentName,
    request: Request[Any, Any, Any],
    experiments: ExperimentStore,
    stats_cache: StatsCache,
    series_store: SeriesStore,
    settings: Settings,
    event_streams: EventStreamLimit,
) -> ASGIApp:
    """Server-Sent Events: a `snapshot` of stats and history every BANDIT_EVENTS_INTERVAL.

    A reconnecting client (Last-Event-ID) gets the history from where it left off; `gone`
    ends the stream when the experiment is deleted; `unavailable` says Redis is away. The
    stream ends after BANDIT_EVENTS_STREAM_MAX and browsers reconnect by themselves.

    A replica serves about BANDIT_MAX_EVENT_STREAMS streams at once, each of its worker
    processes ceil(BANDIT_MAX_EVENT_STREAMS / BANDIT_WORKERS); past that, 503 with Retry-After.
    """
    await experiments.get(name)  # 404 before the stream starts
    resume = _resume_point(request.headers.get("last-event-id"))
    snapshots = _snapshots(name, stats_cache, series_store, settings, resume)
    stream = ServerSentEvent(snapshots, retry_duration=RECONNECT_MS).to_asgi_response(app=None, request=request)
    return event_streams.hold(stream)  # last: nothing may fail between taking the slot and streaming


async def _snapshots(
    name: str,
    stats_cache: StatsCache,
    series_store: SeriesStore,
    settings: Settings,
    resume: tuple[str, float] | None,
) -> AsyncIterator[ServerSentEventMessage]:
    sent_incarnation, since = resume if resume is not None else (None, None)
    ends_at = time.monotonic() + settings.events_stream_max_s
    while time.monotonic() < ends_at:
        try:
            stats, incarnation = await stats_cache.get(name)
            if incarnation != sent_incarnation:
                since = None  # a new stream, or the experiment was reset: the whole history
            series = await series_store.read(name, incarnation, [arm.name for arm in stats.arms], since)
        except ExperimentNotFound:
            yield ServerSentEventMessage(event="gone", data=_encode({"experiment": name}).decode())
            return
        except StoreUnavailable as error:
            yield ServerSentEventMessage(event="unavailable", data=_encode({"detail": error.detail}).decode())
        else:
            if series.t:
                since = series.t[-1]
            sent_incarnation = incarnation
            event = EventSnapshot(
                stats=stats,
                series=series,
                estimate=stats.regret or regret_estimate(stats.arms, stats.leader),
                incarnation=incarnation,
                sent_at=time.time(),
            )
            yield ServerSentEventMessage(
                event="snapshot", id=f"{incarnation}:{since or 0}", data=_encode(event).decode()
            )
        await asyncio.sleep(settings.events_interval_s)
