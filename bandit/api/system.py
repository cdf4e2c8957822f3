"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, get

from bandit.services import Services
from bandit.store import translate_redis_errors


@get("/healthz", media_type=MediaType.JSON, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", media_type=MediaType.JSON)
async def readyz(services: Services) -> Response[dict[str, Any]]:
    """Ready when Redis answers; routing would still work from snapshots without it."""
    try:
        with translate_redis_errors():
            await services.redis.ping()
    except Exception as error:
        return Response({"status": "unavailable", "redis": str(error)}, status_code=503)
    return Response({"status": "ready", "experiments": len(services.registry.snapshots)})
