"""Bearer-token guards: the admin token of the management API, the optional feedback and metrics tokens.

Tokens are compared in constant time and never logged, nor echoed in a response.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from bandit.core.errors import Forbidden, NotAuthenticated


def token_matches(presented: str, expected: str) -> bool:
    """Whether `presented` is `expected`, in time that depends on neither's content nor length."""
    # compare_digest is constant-time only between equal lengths; comparing SHA-256 digests
    # makes every comparison 32 bytes against 32, so not even the token's length leaks.
    return hmac.compare_digest(_digest(presented), _digest(expected))


def _digest(token: str) -> bytes:
    # Header values arrive decoded as latin-1; utf-8 encodes any str without error.
    return hashlib.sha256(token.encode()).digest()


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), else None."""
    scheme, _space, token = connection.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def admin_guard(admin_token: str | None) -> Guard:
    """The management API's guard: 401 without a bearer token, 403 with a wrong one (constant time)."""

    def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        if not admin_token:
            raise NotAuthenticated(
                detail="the management API is disabled: start the service with BANDIT_ADMIN_TOKEN set"
            )
        token = _bearer(connection)
        if token is None:
            raise NotAuthenticated(
                detail="management requires 'Authorization: Bearer <BANDIT_ADMIN_TOKEN>'",
                headers={"WWW-Authenticate": 'Bearer realm="mab-admin"'},
            )
        if not token_matches(token, admin_token):
            raise Forbidden(detail="the bearer token is not the admin token")

    return require_admin


def feedback_guard(feedback_token: str | None, admin_token: str | None) -> Guard:
    """Feedback needs a bearer token: BANDIT_FEEDBACK_TOKEN or the admin token; 401 without one, 403 with a wrong one.

    The admin token is accepted too: whoever holds it can already reset or delete the
    experiment, so it grants nothing new here, and operators' tools need only one token.
    With neither token set, feedback is closed (403 naming the settings that open it):
    a decision id is proof that a decision was made, not that its reward is genuine, so
    anyone who may post rewards can steer the policy with rewards for their own decisions.
    BANDIT_FEEDBACK_OPEN=true is the operator's explicit choice to allow that (no guard then).
    """
    accepted = [token for token in (feedback_token, admin_token) if token]
    expected = "BANDIT_FEEDBACK_TOKEN" if feedback_token else "BANDIT_ADMIN_TOKEN"

    def require_feedback_token(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        if not accepted:
            # 403, not 401: no credential would be accepted, so there is none to ask for.
            raise Forbidden(
                detail="feedback is closed: start the service with BANDIT_FEEDBACK_TOKEN set "
                "(or BANDIT_FEEDBACK_OPEN=true to accept rewards from anyone who holds a decision id)"
            )
        token = _bearer(connection)
        if token is None:
            raise NotAuthenticated(
                detail=f"feedback requires 'Authorization: Bearer <{expected}>'",
                headers={"WWW-Authenticate": 'Bearer realm="mab-feedback"'},
            )
        # A list, not a generator: every comparison runs, so the time does not tell which token was near.
        if not any([token_matches(token, candidate) for candidate in accepted]):
            raise Forbidden(detail="the bearer token is not the feedback token")

    return require_feedback_token


def metrics_guard(metrics_token: str, admin_token: str | None) -> Guard:
    """`/metrics` with BANDIT_METRICS_TOKEN set: that token (read-only, for the scraper) or the admin token."""
    accepted = [token for token in (metrics_token, admin_token) if token]

    def require_metrics_token(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        token = _bearer(connection)
        if token is None:
            raise NotAuthenticated(
                detail="metrics require 'Authorization: Bearer <BANDIT_METRICS_TOKEN>'",
                headers={"WWW-Authenticate": 'Bearer realm="mab-metrics"'},
            )
        if not any([token_matches(token, candidate) for candidate in accepted]):
            raise Forbidden(detail="the bearer token is not the metrics token")

    return require_metrics_token
