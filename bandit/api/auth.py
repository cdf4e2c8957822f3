"""The admin bearer token guard of the management API."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from bandit.exceptions import Forbidden, NotAuthenticated


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """401 without a bearer token, 403 with a wrong one; compared in constant time."""
    expected: str | None = connection.app.state.services.settings.admin_token
    if not expected:
        raise NotAuthenticated(detail="the management API is disabled: start the service with BANDIT_ADMIN_TOKEN set")
    scheme, _space, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated(
            detail="management requires 'Authorization: Bearer <BANDIT_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Forbidden(detail="the bearer token is not the admin token")
