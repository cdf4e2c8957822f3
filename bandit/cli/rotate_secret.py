"""`mab rotate-secret`: a new decision-id key shared through Redis, for every replica."""

from __future__ import annotations

import asyncio
import logging

from bandit.core.errors import StoreUnavailable
from bandit.core.keyring import DEFAULT_ACTIVATE_IN_S, KEYRING_REFRESH_S, describe
from bandit.core.models import RewardSpec
from bandit.core.settings import Settings
from bandit.store.experiments import ExperimentStore
from bandit.store.redis_store import RedisStore

log = logging.getLogger("mab")


async def _longest_feedback_window(experiments: ExperimentStore) -> int:
    windows = [experiment.reward.window_s for experiment in await experiments.list_all()]
    return max(windows, default=RewardSpec().window_s)


async def _rotate(settings: Settings, grace_s: float | None, activate_in_s: float) -> int:
    store = RedisStore.from_settings(settings)
    try:
        longest = await _longest_feedback_window(store.experiments)
        if grace_s is None:
            grace_s = float(longest)
        elif grace_s < longest:
            log.warning(
                "a grace of %.0f s is shorter than the longest feedback window (%d s): feedback for decisions "
                "made just before the switch will be refused (403) before their window ends",
                grace_s,
                longest,
            )
        ring = await store.keyring.rotate(grace_s, activate_in_s)
    except StoreUnavailable:
        # No URL in the message: it may carry a password.
        log.error("Redis does not answer at the URL given (--redis-url, BANDIT_REDIS_URL): nothing was rotated")
        return 1
    finally:
        await store.close()
    print(f"rotated the decision-id key shared through Redis: {describe(ring)}")
    return 0


def rotate_command(settings: Settings, grace_s: float | None, activate_in_s: float | None) -> int:
    """`mab rotate-secret`: the exit status."""
    secret_configured = bool(settings.secret)
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
    return asyncio.run(_rotate(settings, grace_s, activate_in_s))
