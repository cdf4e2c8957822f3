"""The API's route handlers with the guards each group sits behind, for the app to mount."""

from __future__ import annotations

from litestar import Router
from litestar.types import ControllerRouterHandler

from bandit.api.auth import Guard, feedback_guard
from bandit.api.experiments import ExperimentsController
from bandit.api.feedback import post_feedback
from bandit.api.rollback import rollback
from bandit.api.system import healthz, readyz
from bandit.core.settings import Settings


def api_routes(settings: Settings, admin: Guard) -> list[ControllerRouterHandler]:
    """Management behind `admin`, feedback behind the feedback token (if set), the probes open."""
    return [
        Router(path="/", guards=[admin], route_handlers=[ExperimentsController, rollback]),
        Router(
            path="/",
            # No guard at all while feedback is open: Litestar runs each guard on every request.
            guards=[feedback_guard(settings.feedback_token, settings.admin_token)] if settings.feedback_token else [],
            route_handlers=[post_feedback],
        ),
        healthz,
        readyz,
    ]
