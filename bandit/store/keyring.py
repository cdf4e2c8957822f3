"""The decision-id keyring shared through Redis (when BANDIT_SECRET is not set) and its rotation.

Until the first rotation the keyring is the one secret at ``mab:secret``, created by the
first replica to start. A rotation (``mab rotate-secret``) writes the whole keyring as JSON
at :data:`bandit.store.keys.KEYRING` (see :func:`bandit.core.keyring.rotated`). Every replica
re-reads it each :data:`~bandit.core.keyring.KEYRING_REFRESH_S`, so the delay before the new
key signs gives all of them time to know it first: no replica ever sees an id signed with a
key it does not have.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import msgspec
from redis.exceptions import WatchError

from bandit.core.decision_ids import DecisionSigner
from bandit.core.errors import StoreUnavailable
from bandit.core.keyring import DEFAULT_ACTIVATE_IN_S, KEYRING_REFRESH_S, SigningKey, describe, rotated
from bandit.store import keys
from bandit.store.connection import StoreClient, translate_redis_errors

log = logging.getLogger("mab")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[SigningKey]).decode


class KeyringStore:
    """Reads, rotates and follows the keyring every replica shares."""

    def __init__(self, redis: StoreClient) -> None:
        self._redis = redis

    async def shared_secret(self) -> bytes:
        """The decision-id secret every replica agrees on before any rotation, created on first use."""
        with translate_redis_errors():
            await self._redis.set(keys.SECRET, secrets.token_hex(32), nx=True)
            secret = await self._redis.get(keys.SECRET)
        assert secret is not None
        return secret if isinstance(secret, bytes) else secret.encode()

    async def load(self) -> list[SigningKey]:
        """The keys every replica signs and verifies with; raises StoreUnavailable without Redis."""
        with translate_redis_errors():
            raw = await self._redis.get(keys.KEYRING)
        if raw is None:
            return [SigningKey(await self.shared_secret())]
        return _decode(raw)

    async def rotate(self, grace_s: float, activate_in_s: float = DEFAULT_ACTIVATE_IN_S) -> list[SigningKey]:
        """Store a rotated keyring; a rotation racing this one makes it start over, so neither key is lost."""
        legacy = await self.shared_secret()  # exists before we watch, so every replica agrees on it
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(keys.KEYRING)
                        raw = await pipe.get(keys.KEYRING)
                        current = _decode(raw) if raw is not None else [SigningKey(legacy)]
                        ring = rotated(current, secrets.token_bytes(32), time.time(), activate_in_s, grace_s)
                        pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                        pipe.set(keys.KEYRING, _encode(ring))
                        await pipe.execute()
                        return ring
                    except WatchError:
                        continue

    async def follow(self, signer: DecisionSigner) -> None:
        """Keep `signer` on the shared keyring, so a rotation reaches this process within a refresh."""
        while True:
            await asyncio.sleep(KEYRING_REFRESH_S)
            try:
                ring = await self.load()
                if tuple(ring) != signer.keys:
                    signer.rekey(ring)
                    log.info("decision-id keyring changed: %s", describe(ring))
            except StoreUnavailable:
                continue  # the keys in hand keep working; the next refresh tries again
            except (msgspec.DecodeError, ValueError) as error:
                log.error(
                    "the decision-id keyring at %s is unusable (%s); keeping the current keys", keys.KEYRING, error
                )
