"""The API's route handlers with the guards each group sits behind, for the app to mount."""

from __future__ import annotations

from litestar import Router
from litestar.types import ControllerRouterHandler

from bandit.api.auth import Guard, feedback_guard, metrics_guard
from bandit.api.decision_log import evaluate, export_log
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
        Router(path="/", guards=[admin], route_handlers=[ExperimentsController, rollback, export_log, evaluate]),
        Router(
            path="/",
            # No guard at all while feedback is open: Litestar runs each guard on every request.
            guards=[] if open_feedback else [feedback_guard(settings.feedback_token, settings.admin_token)],
            route_handlers=[post_feedback],
        ),
        Router(path="/", guards=_metrics_guards(settings, admin), route_handlers=[metrics_page]),
        healthz,
        readyz,
    ]


def _metrics_guards(settings: Settings, admin: Guard) -> list[Guard]:
    """BANDIT_METRICS_TOKEN (or the admin token) when set; else readable as the dashboard is: the
    same names and figures, open unless BANDIT_DASHBOARD_PUBLIC=false."""
    if settings.metrics_token:
        return [metrics_guard(settings.metrics_token, settings.admin_token)]
    return [] if settings.dashboard_public else [admin]
