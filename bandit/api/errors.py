"""Exception handlers: every error answers JSON `{"status_code", "detail"}`, never a bare 500."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

log = logging.getLogger("mab.api")


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"status_code": status, "detail": detail}, status_code=status, media_type=MediaType.JSON, headers=headers
    )


def validation_error(_: Request[Any, Any, Any], error: ValidationException) -> Response[Any]:
    """A malformed body or parameter: 422, with msgspec's message naming the field."""
    messages = [_located(item) for item in (error.extra or []) if isinstance(item, dict)]
    detail = "; ".join(m for m in messages if m) or error.detail
    if detail.startswith("Validation failed for"):
        detail = "the request body is not valid JSON" if not messages else detail
    return _json(422, detail)


def _located(item: dict[str, Any]) -> str:
    """msgspec's message with the field it is about, e.g. "`items[0].reward`: Expected `float`, got `str`"."""
    message, key = str(item.get("message", "")), item.get("key")
    if not key or key == "data":
        return f"body: {message}"
    return f"`{key}`: {message}"


def http_error(_: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    # Litestar answers an undecodable body with 400; the contract calls malformed input 422.
    status = 422 if error.status_code == 400 else error.status_code
    return _json(status, error.detail, error.headers)


def unexpected_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _json(500, "internal error; see the service log")
