"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, get

from bandit.core.ports import Routing
from bandit.store.redis_store import RedisStore


@get("/healthz", media_type=MediaType.JSON, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", media_type=MediaType.JSON)
async def readyz(store: RedisStore, routing: Routing) -> Response[dict[str, Any]]:
    """Ready when Redis answers; routing would still work from snapshots without it."""
    try:
        await store.ping()
    except Exception as error:  # unreachable (StoreUnavailable), or refusing us (e.g. an ACL): not ready
        return Response({"status": "unavailable", "redis": str(error)}, status_code=503)
    return Response({"status": "ready", "experiments": len(routing.experiments())})
