"""The Redis client: how the store connects, and the one place Redis errors become StoreUnavailable."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, TypeAlias
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bandit.core.errors import StoreUnavailable
from bandit.core.settings import redis_userinfo

#: What the stores talk to: one Redis, or a Redis Cluster (every experiment in one slot of it).
StoreClient: TypeAlias = Redis | RedisCluster

# Redis cannot be reached, or the part of the cluster that holds the key is failing over:
# a primary that was just demoted refuses writes (READONLY), a slot moving or left uncovered
# answers MOVED/ASK/TRYAGAIN/CLUSTERDOWN past the client's own redirections, and a cluster
# with no reachable node at all raises RedisClusterException; a full Redis refuses writes (OOM).
# Each is an outage, never a 500.
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    ClusterDownError,
    TryAgainError,
    AskError,
    ReadOnlyError,
    OutOfMemoryError,
    RedisClusterException,
)
_REFUSED_FOR_NOW = ("NOREPLICAS",)
_REDIS_CONNECTION_MODULE = os.path.join("redis", "asyncio", "connection.py")
#: Seconds to wait for a reply, and for a connection.
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0


def connect(url: str, cluster: bool = False) -> StoreClient:
    """A client for `url` (with `cluster`, any node of a Redis Cluster); it connects on first use."""
    if cluster:
        # redis-py's cluster default retries a failed node 10 times with back-off up to 10 s; during
        # a failover that holds every request for many seconds before it can answer 503. Three quick
        # attempts ride out a redirection or a reconnect; a real outage is answered as one.
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3)
        return RedisCluster.from_url(
            url, retry=retry, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
        )
    redis: Redis = Redis.from_url(
        url, health_check_interval=10, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
    )
    return redis


def connect_without_retry(
    connection_class: type[AbstractConnection], connection_kwargs: dict[str, Any], reply_timeout_s: float
) -> Redis:
    """A plain client made with a client's own connection settings (host, port, credentials, TLS,
    timeouts), that never sends a command twice, and waits `reply_timeout_s` at least for a reply.

    For a write and the WAIT after it: resent on a fresh connection, a WAIT would count that
    connection's writes (none) and confirm at once a write no replica holds. Every error must
    reach the caller, which answers 503; the client's resend is idempotent.
    """
    kwargs = dict(connection_kwargs)
    kwargs["socket_timeout"] = max(float(kwargs.get("socket_timeout") or SOCKET_TIMEOUT_S), reply_timeout_s)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    kwargs.pop("retry_on_error", None)
    kwargs.pop("retry_on_timeout", None)
    pool = ConnectionPool(connection_class=connection_class, **kwargs)
    return Redis(connection_pool=pool)


def retry_on_a_fresh_connection(redis: StoreClient) -> None:
    """Send a command once more, on a new connection, when its pooled connection turns out closed.

    After Redis restarts, every connection in the pool is dead and each would fail its next
    command: a 503 for a feedback or management request made with Redis back up. A client
    made by `Redis.from_url` does not retry at all (its pool gets no Retry), so the store sets
    one. Only ConnectionError, and only once: a command that timed out may have run, and
    running it again could count a batch of decisions twice.

    A cluster client keeps the retry `connect` gave it: it must also follow redirections.
    """
    if isinstance(redis, RedisCluster):
        return
    redis.set_retry(Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))


@contextlib.contextmanager
def translate_redis_errors() -> Iterator[None]:
    """Turn 'Redis is unreachable' into StoreUnavailable (503 with Retry-After)."""
    try:
        yield
    except _UNREACHABLE as error:
        raise StoreUnavailable() from error
    except ResponseError as error:
        # A primary refusing writes while it lacks the replicas its min-replicas-to-write asks for
        # (NOREPLICAS; a full memory is OutOfMemoryError, above): an outage of the store, to be
        # retried, not a fault of the request.
        if not str(error).startswith(_REFUSED_FOR_NOW):
            raise
        raise StoreUnavailable() from error
    except (AttributeError, TypeError) as error:
        # redis-py's asyncio connection leaks the transport's own AttributeError/TypeError when it
        # writes to a connection the peer just closed (redis/redis-py#4287, #3546; 8.1.0 has it):
        # that is a connection lost, seen during a failover, and must answer 503, not 500.
        if not _raised_in_redis_connection(error):
            raise
        raise StoreUnavailable() from error


def _raised_in_redis_connection(error: BaseException) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename.endswith(_REDIS_CONNECTION_MODULE):
            return True
        traceback = traceback.tb_next
    return False


#: What stands for a password in a Redis URL written to a message or the log.
MASK = "***"
#: The query parameter redis-py reads a password from, besides the URL's userinfo.
_PASSWORD_PARAMETER = "password"


def url_passwords(url: str) -> list[str]:
    """Every password `url` carries (its userinfo's, a `password=` parameter's), as written and
    percent-decoded: the forms in which one could reach a message."""
    forms: set[str] = set()
    split = redis_userinfo(url)
    if split is not None:
        password = split[1].partition(":")[2]
        forms |= {password, unquote(password)}
    try:
        query = urlsplit(url).query
    except ValueError:
        query = ""
    for parameter in query.split("&"):
        key, _equals, value = parameter.partition("=")
        if key == _PASSWORD_PARAMETER and value:
            forms |= {value, unquote_plus(value)}  # redis-py reads the query as a form does
    return sorted(form for form in forms if form)


def masked_url(url: str) -> str:
    """`url` with each password in it replaced by ***, the user name kept: for messages and logs."""
    split = redis_userinfo(url)
    if split is not None:
        scheme, userinfo, after = split
        user, colon, _password = userinfo.partition(":")
        url = f"{scheme}://{user}:{MASK}@{after}" if colon else url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a Redis URL that does not parse>"
    query = "&".join(
        f"{_PASSWORD_PARAMETER}={MASK}" if parameter.partition("=")[0] == _PASSWORD_PARAMETER else parameter
        for parameter in parts.query.split("&")
    )
    if not parts.netloc:  # unix:///path: urlunsplit would drop the empty authority's `//`
        before_query = url.partition("?")[0].partition("#")[0]
        return before_query + (f"?{query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes; its type hints also allow str)."""
    return value.decode() if isinstance(value, bytes) else value


def as_bytes_hash(reply: dict[Any, Any]) -> dict[bytes, bytes]:
    """An HGETALL reply with its keys and values as bytes."""
    return {
        (k if isinstance(k, bytes) else k.encode()): (v if isinstance(v, bytes) else v.encode())
        for k, v in reply.items()
    }
