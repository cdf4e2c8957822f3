"""The decision-id keyring shared through Redis (when BANDIT_SECRET is not set) and its rotation.

Until the first rotation the keyring is the one secret at ``mab:secret``, created by the
first replica to start. A rotation (``mab rotate-secret``) writes the whole keyring as JSON
at :data:`bandit.keys.KEYRING`: a new key that starts signing a little later, and the keys it replaces,
each verifying until its grace period ends. Every replica re-reads the keyring each
:data:`KEYRING_REFRESH_S`, so the delay before the new key signs gives all of them time to
know it first: no replica ever sees an id signed with a key it does not have. The times are
absolute Unix seconds, so all replicas switch, and end the grace, at the same moment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from datetime import UTC, datetime

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError

from bandit import keys
from bandit.decision_ids import DecisionSigner, SigningKey
from bandit.exceptions import StoreUnavailable
from bandit.models import RewardSpec
from bandit.store import ExperimentStore, translate_redis_errors

log = logging.getLogger("mab")

#: The rotated keyring (JSON list of keys; secrets base64). Belongs with the others in bandit/keys.py.
#: How often each service process re-reads the keyring.
KEYRING_REFRESH_S = 1.0
#: Default delay before a new key signs: several refreshes, plus room for clock skew between hosts.
DEFAULT_ACTIVATE_IN_S = 10.0

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[SigningKey]).decode


async def load_keyring(store: ExperimentStore) -> list[SigningKey]:
    """The keys every replica signs and verifies with; raises StoreUnavailable without Redis."""
    with translate_redis_errors():
        raw = await store.redis.get(keys.KEYRING)
    if raw is None:
        return [SigningKey(await store.shared_secret())]
    return _decode(raw)


def rotated(
    current: list[SigningKey], new_secret: bytes, now: float, activate_in_s: float, grace_s: float
) -> list[SigningKey]:
    """The keyring after a rotation at `now`: `new_secret` signs from `now + activate_in_s`.

    Keys without an end (the one signing now, or one still waiting to start) verify for
    `grace_s` after the switch; keys already in a grace period keep theirs, and retired ones
    are dropped.
    """
    starts = now + activate_in_s
    kept = [
        key if key.not_after is not None else dataclasses.replace(key, not_after=starts + grace_s)
        for key in current
        if not key.retired(now)
    ]
    return [SigningKey(new_secret, not_before=starts), *kept]


async def rotate(
    store: ExperimentStore, grace_s: float, activate_in_s: float = DEFAULT_ACTIVATE_IN_S
) -> list[SigningKey]:
    """Store a rotated keyring; a rotation racing this one makes it start over, so neither key is lost."""
    legacy = await store.shared_secret()  # exists before we watch, so every replica agrees on it
    with translate_redis_errors():
        async with store.redis.pipeline(transaction=True) as pipe:
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


def describe(ring: list[SigningKey]) -> str:
    """The keyring's schedule for the log; never its secrets."""
    return "; ".join(
        f"key {index}: signs from {_when(key.not_before)}, verifies until {_when(key.not_after)}"
        for index, key in enumerate(ring)
    )


def _when(moment: float | None) -> str:
    if moment is None:
        return "further notice"
    if moment <= 0:
        return "the start"
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


async def follow_keyring(store: ExperimentStore, signer: DecisionSigner) -> None:
    """Keep `signer` on the shared keyring, so a rotation reaches this process within a refresh."""
    while True:
        await asyncio.sleep(KEYRING_REFRESH_S)
        try:
            ring = await load_keyring(store)
            if tuple(ring) != signer.keys:
                signer.rekey(ring)
                log.info("decision-id keyring changed: %s", describe(ring))
        except StoreUnavailable:
            continue  # the keys in hand keep working; the next refresh tries again
        except (msgspec.DecodeError, ValueError) as error:
            log.error("the decision-id keyring at %s is unusable (%s); keeping the current keys", keys.KEYRING, error)


async def _longest_feedback_window(store: ExperimentStore) -> int:
    windows = [experiment.reward.window_s for experiment in await store.list_all()]
    return max(windows, default=RewardSpec().window_s)


async def _rotate_command(redis_url: str, grace_s: float | None, activate_in_s: float) -> int:
    redis: Redis = Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
    try:
        store = ExperimentStore(redis)
        longest = await _longest_feedback_window(store)
        if grace_s is None:
            grace_s = float(longest)
        elif grace_s < longest:
            log.warning(
                "a grace of %.0f s is shorter than the longest feedback window (%d s): feedback for decisions "
                "made just before the switch will be refused (403) before their window ends",
                grace_s,
                longest,
            )
        ring = await rotate(store, grace_s, activate_in_s)
    except StoreUnavailable:
        # No URL in the message: it may carry a password.
        log.error("Redis does not answer at the URL given (--redis-url, BANDIT_REDIS_URL): nothing was rotated")
        return 1
    finally:
        await redis.aclose()
    print(f"rotated the decision-id key shared through Redis: {describe(ring)}")
    return 0


def rotate_command(redis_url: str, secret_configured: bool, grace_s: float | None, activate_in_s: float | None) -> int:
    """`mab rotate-secret`: the exit status."""
    activate_in_s = DEFAULT_ACTIVATE_IN_S if activate_in_s is None else activate_in_s
    if secret_configured:
        log.error(
            "BANDIT_SECRET is set, so the service signs with it and not with the keyring in Redis: rotate by "
            "setting BANDIT_SECRET to the new secret, BANDIT_PREVIOUS_SECRET to the old one and "
            "BANDIT_PREVIOUS_SECRET_UNTIL to when it stops verifying"
        )
        return 2
    if activate_in_s < 2 * KEYRING_REFRESH_S or (grace_s is not None and grace_s < 0):
        log.error(
            "--activate-in must be at least %.0f s (so every replica has the new key before it signs) "
            "and --grace at least 0",
            2 * KEYRING_REFRESH_S,
        )
        return 2
    return asyncio.run(_rotate_command(redis_url, grace_s, activate_in_s))
