"""Durable acknowledgements: a write answered only once enough Redis replicas hold it.

Redis replicates asynchronously, so a primary that fails right after a reply can take the
write with it. WAIT blocks until the writes *of the connection it is sent on* reached N
replicas, so the write and its WAIT must share one connection: of the Redis itself, or, on a
cluster, of the primary that owns the key's slot (a plain client per node, as the cluster
client picks a connection per command).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from bandit.core.errors import StoreUnavailable
from bandit.store.connection import StoreClient, connect_without_retry, translate_redis_errors

T = TypeVar("T")
#: The fence key is one small string per experiment, gone a minute after its last use.
FENCE_TTL_S = 60


class NotReplicated(StoreUnavailable):
    """The write did not reach the replicas asked for in time: answered 503, to be resent.

    Resending is safe: the write is idempotent (a reward counted once per decision). The write
    did happen on the primary: `written` is what it returned (e.g. which rewards it counted), so
    the caller's own accounting (the metrics) matches what the primary holds.
    """

    written: Any = None


class KeyConnections:
    """One connection at a time to the Redis primary that serves a key.

    Its clients are its own, made with the store client's connection settings but without
    retries (see connect_without_retry), and wait at least `reply_timeout_s` for a reply (a WAIT
    blocks up to the acknowledgement timeout).
    """

    def __init__(self, redis: StoreClient, reply_timeout_s: float = 0.0) -> None:
        self._redis = redis
        self._reply_timeout_s = reply_timeout_s
        self._nodes: dict[str, Redis] = {}

    @contextlib.asynccontextmanager
    async def owner_of(self, key: str) -> AsyncIterator[Redis]:
        """A client bound to one connection of the primary that owns `key` (released on exit)."""
        try:
            with translate_redis_errors():
                base = await self._client_of(key)
                async with base.client() as connection:
                    yield connection
        except StoreUnavailable:
            await self.forget_the_slots()
            raise

    async def forget_the_slots(self) -> None:
        """After a failure the slot map may be stale (a failover, a reshard): ask the cluster again.

        The cluster client refreshes its map when its own commands fail; these per-node clients
        bypass it, so they ask for the refresh themselves. Best effort: with the cluster away, the
        next attempt asks again.
        """
        if isinstance(self._redis, RedisCluster):
            with contextlib.suppress(Exception):
                await self._redis.nodes_manager.initialize()

    async def owners(self, keys: Sequence[str]) -> dict[Redis, list[int]]:
        """The positions of `keys`, grouped by the client of the primary that owns each."""
        groups: dict[Redis, list[int]] = {}
        with translate_redis_errors():
            for index, key in enumerate(keys):
                groups.setdefault(await self._client_of(key), []).append(index)
        return groups

    async def _client_of(self, key: str) -> Redis:
        if isinstance(self._redis, Redis):
            pool = self._redis.connection_pool
            return self._client_for("", pool.connection_class, pool.connection_kwargs)
        cluster: RedisCluster = self._redis
        await cluster.initialize()  # a no-op once the client knows the slots
        node = cluster.get_node_from_key(key)
        if node is None:
            raise StoreUnavailable()
        return self._client_for(node.name, node.connection_class, node.connection_kwargs)

    def _client_for(self, name: str, connection_class: type[AbstractConnection], kwargs: dict[str, Any]) -> Redis:
        client = self._nodes.get(name)
        if client is None:
            client = self._nodes[name] = connect_without_retry(connection_class, kwargs, self._reply_timeout_s)
        return client

    async def close(self) -> None:
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()

    async def pipelined(
        self,
        keys: Sequence[str],
        queue: Callable[[Pipeline, int], Awaitable[Any]],
        tail: tuple[Callable[[Pipeline], None], Callable[[Any], None]] | None = None,
    ) -> list[Any | StoreUnavailable]:
        """Queue one command per key (`queue(pipe, index)`) in one pipeline per primary, sent concurrently.

        A cluster pipeline of redis-py refuses EVALSHA, and splits by node anyway: these are plain
        pipelines on each primary's own client, which also load a script a primary lacks. One reply
        per key, or the StoreUnavailable its primary met. `tail`: a command queued last in every
        pipeline, and what to do with its reply (raise StoreUnavailable to fail that pipeline's keys).
        """
        replies: list[Any | StoreUnavailable] = [StoreUnavailable()] * len(keys)

        async def send(client: Redis, positions: list[int]) -> None:
            try:
                with translate_redis_errors():
                    async with client.pipeline(transaction=False) as pipe:
                        for index in positions:
                            await queue(pipe, index)
                        if tail is not None:
                            tail[0](pipe)
                        answers = await pipe.execute(raise_on_error=False)
                    if tail is not None:
                        tail[1](answers.pop())
            except StoreUnavailable as error:
                await self.forget_the_slots()
                for index in positions:
                    replies[index] = error
                return
            for index, answer in zip(positions, answers, strict=True):
                replies[index] = _outcome(answer)
            if any(isinstance(replies[index], StoreUnavailable) for index in positions):
                await self.forget_the_slots()  # a slot moved, or its primary is failing over

        try:
            groups = await self.owners(keys)
        except StoreUnavailable as error:
            await self.forget_the_slots()
            return [error] * len(keys)
        await asyncio.gather(*(send(client, positions) for client, positions in groups.items()))
        return replies


class Durability:
    """How many replicas must hold a write before it is acknowledged (0: the primary alone)."""

    def __init__(self, connections: KeyConnections, replicas: int = 0, timeout_s: float = 1.0) -> None:
        self._connections = connections
        self.replicas = replicas
        self.timeout_s = timeout_s

    async def write(
        self,
        key: str,
        write: Callable[[StoreClient], Awaitable[T]],
        default: StoreClient,
        fence: Callable[[T], str | None] = lambda _result: None,
    ) -> T:
        """Run `write` (which touches `key`'s slot only); with replicas asked for, return only once they hold it.

        `fence(result)`: a key of the same slot to write to when `write` found its work already
        done by another connection (a duplicate reward). WAIT only counts the writes of its own
        connection, so without one it would not wait for that other write, which may still be
        on its way to the replicas; the fence comes after it in the replication stream.

        Raises NotReplicated when they did not within the timeout. The write has then happened on
        the primary and may or may not survive a failover; the caller answers 503, and the client's
        resend counts once either way.
        """
        if self.replicas <= 0:
            return await write(default)
        async with self._connections.owner_of(key) as connection:
            with translate_redis_errors():
                result = await write(connection)
                fence_key = fence(result)
                if fence_key is not None:
                    await connection.set(fence_key, 1, ex=FENCE_TTL_S)
                try:
                    acknowledged: Any = await connection.wait(self.replicas, max(1, int(self.timeout_s * 1000)))
                except ResponseError as error:
                    acknowledged = error
        try:
            self._check(acknowledged)
        except NotReplicated as error:
            # WAIT answered a count: the write is on the primary. An error instead means the node
            # was demoted meanwhile, and the write is probably lost with it: nothing to account.
            if not isinstance(acknowledged, Exception):
                error.written = result
            raise
        return result

    def _check(self, acknowledged: Any) -> None:
        """Raise NotReplicated unless WAIT's reply says enough replicas hold the writes.

        WAIT answers an error on a node that stopped being a primary between the write and the
        WAIT (a primary demoted in a failover: "WAIT cannot be used with replica instances"),
        and the write may then be lost with its data set: not acknowledged either.
        """
        if isinstance(acknowledged, Exception):
            raise NotReplicated(
                detail=f"the Redis node that took the write could not confirm its replicas ({acknowledged}); "
                "send it again"
            )
        if int(acknowledged) < self.replicas:
            raise NotReplicated(
                detail=f"the write reached {acknowledged} of the {self.replicas} Redis replicas asked for "
                f"(BANDIT_ACK_REPLICAS) within {self.timeout_s:g} s; send it again"
            )

    async def pipelined(
        self, keys: Sequence[str], queue: Callable[[Pipeline, int], Awaitable[Any]]
    ) -> list[Any | StoreUnavailable]:
        """Queue one write per key (`queue(pipe, index)`), sent in one pipeline per primary, concurrently.

        One reply per key, or the StoreUnavailable its primary met. With replicas asked for, each
        pipeline ends with a WAIT on its own connection, which covers every write before it.
        """
        if self.replicas <= 0:
            return await self._connections.pipelined(keys, queue)
        timeout_ms = max(1, int(self.timeout_s * 1000))

        def wait(pipe: Pipeline) -> None:
            pipe.wait(self.replicas, timeout_ms)

        return await self._connections.pipelined(keys, queue, tail=(wait, self._check))


def _outcome(answer: Any) -> Any | StoreUnavailable:
    """A pipeline reply, with an error that means "Redis is away" (here: a moved slot too) as StoreUnavailable."""
    if isinstance(answer, Exception):
        try:
            with translate_redis_errors():
                raise answer
        except StoreUnavailable as error:
            return error
        raise answer
    return answer
