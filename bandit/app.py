"""The app factory: one Litestar app with the proxy mounted at /invoke."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, asgi
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig

from bandit import __version__
from bandit.api.dashboard import (
    dashboard_asset,
    dashboard_overview,
    experiment_events,
    experiment_page,
    overview_page,
)
from bandit.api.errors import http_error, unexpected_error, validation_error
from bandit.api.experiments import ExperimentsController
from bandit.api.feedback import post_feedback
from bandit.api.openapi import StrictStructSchemaPlugin
from bandit.api.rollback import rollback
from bandit.api.system import healthz, readyz
from bandit.dashboard_state import Dashboard, open_dashboard
from bandit.services import Services, open_services
from bandit.settings import Settings, load_settings

log = logging.getLogger("mab")


def _services(state: State) -> Services:
    services: Services = state.services
    return services


def _dashboard(state: State) -> Dashboard:
    dashboard: Dashboard = state.dashboard
    return dashboard


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the service; Redis and the upstream client are opened by its lifespan."""
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_services(settings) as services, open_dashboard(services) as dashboard:
            app.state.services = services
            app.state.dashboard = dashboard
            log.info("mab %s ready, state in Redis at %s", __version__, _redacted(settings.redis_url))
            yield

    @asgi("/invoke", is_mount=True, copy_scope=False)
    async def invoke(scope: Any, receive: Any, send: Any) -> None:
        """ANY /invoke/{experiment}/{path}: routed by the experiment's policy."""
        await scope["app"].state.services.proxy(scope, receive, send)

    return Litestar(
        route_handlers=[
            invoke,
            ExperimentsController,
            rollback,
            post_feedback,
            healthz,
            readyz,
            overview_page,
            experiment_page,
            dashboard_asset,
            dashboard_overview,
            experiment_events,
        ],
        dependencies={
            "services": Provide(_services, sync_to_thread=False),
            "dashboard": Provide(_dashboard, sync_to_thread=False),
        },
        lifespan=[lifespan],
        exception_handlers={
            ValidationException: validation_error,
            HTTPException: http_error,
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
    microseconds per forwarded request (BENCHMARKS.md). Until the lifespan has opened the
    services, and for everything else, Litestar answers.
    """

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/invoke/"):
            services = getattr(self.app.state, "services", None)
            if services is not None:
                await services.proxy(scope, receive, send)
                return
        await self.app(scope, receive, send)  # type: ignore[arg-type]  # a plain ASGI scope dict


def create_asgi(settings: Settings | None = None) -> FrontDoor:
    """The service as `mab serve` runs it (see FrontDoor)."""
    return FrontDoor(create_app(settings))


def _redacted(url: str) -> str:
    """The Redis URL without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at and credentials else url
