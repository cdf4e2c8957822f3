"""What the automatic actors keep in Redis: per-experiment leases, and the last verdicts for stats.

A lease lives in the experiment's own slot (`mab:{name}:lease`), so the script that applies an
automatic change checks it in the same step (update_experiment.lua): a replica that lost its
lease, however late its change arrives, changes nothing. Leases are per experiment, so the
work spreads over the replicas and a cluster needs no key outside the experiment's slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from bandit.core.errors import StoreUnavailable
from bandit.store import keys
from bandit.store.connection import StoreClient, translate_redis_errors
from bandit.store.durability import KeyConnections
from bandit.store.lua import LuaScripts

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline


class AutopilotStore:
    """Leases and verdicts of the automatic actors."""

    def __init__(self, redis: StoreClient, scripts: LuaScripts, connections: KeyConnections) -> None:
        self._redis = redis
        self._scripts = scripts
        self._connections = connections

    async def hold(self, names: Sequence[str], token: str, lease_ms: int) -> list[bool]:
        """Take or renew the lease of each experiment for `token`; True where it holds it.

        An experiment whose primary is away counts as not held: nothing acts on it meanwhile.
        """
        if not names:
            return []

        def queue(pipe: Pipeline, index: int) -> Awaitable[Any]:
            return self._scripts.hold_lease(
                keys=[keys.autopilot_lease(names[index])], args=[token, lease_ms], client=pipe
            )

        replies = await self._connections.pipelined([keys.autopilot_lease(name) for name in names], queue)
        if replies and all(isinstance(reply, StoreUnavailable) for reply in replies):
            raise replies[0]
        return [not isinstance(reply, StoreUnavailable) and bool(reply) for reply in replies]

    async def release(self, names: Sequence[str], token: str) -> None:
        """Give up the leases `token` holds, so another replica takes over at once (on shutdown)."""
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(keys.autopilot_lease(name))
                owners = await pipe.execute()
            mine = [name for name, owner in zip(names, owners, strict=True) if owner == token.encode()]
            for name in mine:
                # Between the GET and the DEL the lease could only pass on once it expired: at worst
                # another replica takes it a moment sooner.
                await self._redis.delete(keys.autopilot_lease(name))

    async def write_verdicts(self, verdicts: Sequence[tuple[str, bytes]], ttl_s: int) -> None:
        """Store each experiment's latest guardrail verdict (JSON) for stats, expiring unless renewed."""
        if not verdicts:
            return
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, raw in verdicts:
                    pipe.set(keys.autopilot_verdict(name), raw, ex=ttl_s)
                await pipe.execute()
