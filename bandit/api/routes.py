"""The API's route handlers with the guards each group sits behind, for the app to mount."""

from __future__ import annotations

from litestar import Router
from litestar.types import ControllerRouterHandler

from bandit.api.auth import Guard, feedback_guard
from bandit.api.experiments import ExperimentsController
from bandit.api.feedback import post_feedback
from bandit.api.metrics import metrics_page
from bandit.api.rollback import rollback
from bandit.api.system import healthz, readyz
from bandit.core.settings import Settings


def api_routes(settings: Settings, admin: Guard) -> list[ControllerRouterHandler]:
    """Management behind `admin`, feedback behind a token unless BANDIT_FEEDBACK_OPEN, metrics as the
    dashboard, the probes open."""
    open_feedback = settings.feedback_open and not settings.feedback_token
    return [
        Router(path="/", guards=[admin], route_handlers=[ExperimentsController, rollback]),
        Router(
            path="/",
            # No guard at all while feedback is open: Litestar runs each guard on every request.
            guards=[] if open_feedback else [feedback_guard(settings.feedback_token, settings.admin_token)],
            route_handlers=[post_feedback],
        ),
        # Readable as the dashboard is: the same names and figures, for a scraper.
        Router(path="/", guards=[] if settings.dashboard_public else [admin], route_handlers=[metrics_page]),
        healthz,
        readyz,
    ]
