"""The decision-id signing keyring: keys with the times they sign and verify, and their rotation.

A rotation adds a new key that starts signing a little later, and keeps the keys it replaces
verifying until their grace period ends. The times are absolute Unix seconds, so every
replica switches, and ends the grace, at the same moment however often it restarts.
Where the keyring is kept and shared is the store's business (:mod:`bandit.store.keyring`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

#: How often each service process re-reads a keyring shared through Redis.
KEYRING_REFRESH_S = 1.0
#: Default delay before a new key signs: several refreshes, plus room for clock skew between hosts.
DEFAULT_ACTIVATE_IN_S = 10.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One secret of the keyring and when it is in force, in Unix seconds.

    The times are absolute, not relative to a process start, so every replica agrees on
    them however often it restarts.
    """

    secret: bytes
    # Signs from this time on. It verifies before then too, so replicas whose clocks run a
    # little ahead, or that switch first, are understood by the others.
    not_before: float = 0.0
    # Ids signed with it stop verifying at this time (the end of a rotation's grace); None: never.
    not_after: float | None = None

    def in_force(self, now: float) -> bool:
        return self.not_before <= now and (self.not_after is None or now < self.not_after)

    def retired(self, now: float) -> bool:
        return self.not_after is not None and now >= self.not_after


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
