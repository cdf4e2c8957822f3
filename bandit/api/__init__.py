"""The HTTP API: management behind the admin token, feedback, the probes, and how errors answer."""

from __future__ import annotations

from bandit.api.auth import admin_guard, feedback_guard
from bandit.api.errors import http_error, service_error, unexpected_error, validation_error
from bandit.api.routes import api_routes

__all__ = [
    "admin_guard",
    "api_routes",
    "feedback_guard",
    "http_error",
    "service_error",
    "unexpected_error",
    "validation_error",
]
