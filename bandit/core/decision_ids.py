"""Signed, self-describing decision ids: feedback is validated without a lookup.

An id reads ``<experiment>.<arm>.<incarnation>.<issued ms, base 36>.<latency µs, base 36>.<nonce>.<signature>``;
names never contain dots. The latency is the proxy's own measurement of the request
(to the upstream's response headers), so a latency penalty needs no lookup either;
ids from before it was added (without that part) still verify. The signature is HMAC-SHA256 over everything before it,
truncated to 128 bits and base64url-encoded, so nobody can reward a decision that
was never made, nor move one to another arm or time.

Keys rotate: a new key signs from its start time, the one it replaces still verifies until
its grace period ends, and an id signed with a key past that is refused with a message
saying so (403, like a forgery: the signature no longer counts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bandit.core.errors import ForgedDecision
from bandit.core.keyring import SigningKey

_SIGNATURE_BYTES = 16


@dataclass(frozen=True, slots=True)
class Decision:
    """What a verified decision id says."""

    experiment: str
    arm: str
    incarnation: str
    issued_ms: int
    nonce: str
    # None for ids issued before latencies were recorded in them.
    latency_us: int | None = None


class DecisionSigner:
    """Signs with the newest key in force and verifies with every key not yet retired (key rotation).

    Plain secrets are keys without time limits; among keys equally in force the first listed signs.
    """

    def __init__(self, keys: Sequence[SigningKey | bytes], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.rekey(keys)

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return tuple(key for key, _mac in self._keys)

    def rekey(self, keys: Sequence[SigningKey | bytes]) -> None:
        """Replace the keyring, e.g. after a rotation; ids signed from now on use its signing key."""
        ring = [key if isinstance(key, SigningKey) else SigningKey(key) for key in keys]
        if not ring or not all(key.secret for key in ring):
            raise ValueError("at least one non-empty secret is needed to sign decision ids")
        now = self._clock()
        if not any(key.in_force(now) for key in ring):
            raise ValueError("no key of the keyring is in force now: every one is retired or not yet valid")
        self._keys = [(key, hmac.new(key.secret, digestmod=hashlib.sha256)) for key in ring]
        self._choose_signing_key(now)

    def _choose_signing_key(self, now: float) -> None:
        """Sign with the in-force key that started last, and note when that choice must be made again."""
        in_force = [(key, mac) for key, mac in self._keys if key.in_force(now)]
        moments = [key.not_before for key, _mac in self._keys if key.not_before > now]
        if in_force:  # else (every key retired since): keep signing with the last one rather than fail
            # max() keeps the first of equals, so the first listed of several plain secrets signs.
            signing_key, self._signing = max(in_force, key=lambda pair: pair[0].not_before)
            if signing_key.not_after is not None:
                moments.append(signing_key.not_after)
        # The next moment a key starts or the signing key ends; sign() compares one number until then.
        self._recheck_at_ms = min(moments) * 1000 if moments else math.inf

    def sign(
        self, experiment: str, arm: str, incarnation: str, issued_ms: int | None = None, latency_us: int = 0
    ) -> str:
        """A new decision id for choosing `arm` in `experiment`, whose request took `latency_us`.

        It is signed with the key in force now, whatever `issued_ms` says (tests backdate ids).
        """
        now_ms = int(self._clock() * 1000)
        if now_ms >= self._recheck_at_ms:
            self._choose_signing_key(now_ms / 1000)
        issued = now_ms if issued_ms is None else issued_ms
        payload = (
            f"{experiment}.{arm}.{incarnation}.{_base36(issued)}.{_base36(max(latency_us, 0))}.{os.urandom(8).hex()}"
        )
        return f"{payload}.{self._signature(self._signing, payload)}"

    def verify(self, decision_id: str) -> Decision:
        """The decision behind an id; raises ForgedDecision unless a key not yet retired signed it."""
        payload, _, signature = decision_id.rpartition(".")
        parts = payload.split(".")
        if len(parts) not in (5, 6) or not signature.isascii():
            raise ForgedDecision(detail="decision is not a valid decision id")
        signed_by = next(
            (key for key, mac in self._keys if hmac.compare_digest(self._signature(mac, payload), signature)), None
        )
        if signed_by is None:
            raise ForgedDecision(detail="decision id signature does not verify: forged or altered")
        if signed_by.retired(self._clock()):
            assert signed_by.not_after is not None
            ended = datetime.fromtimestamp(signed_by.not_after, UTC).isoformat(timespec="seconds")
            raise ForgedDecision(
                detail=f"decision id was signed with a retired key: the rotation's grace period ended at {ended}"
            )
        if len(parts) == 5:
            experiment, arm, incarnation, issued, nonce = parts
            return Decision(experiment, arm, incarnation, int(issued, 36), nonce)
        experiment, arm, incarnation, issued, latency, nonce = parts
        return Decision(experiment, arm, incarnation, int(issued, 36), nonce, int(latency, 36))

    @staticmethod
    def _signature(key: hmac.HMAC, payload: str) -> str:
        mac = key.copy()
        mac.update(payload.encode())
        return base64.urlsafe_b64encode(mac.digest()[:_SIGNATURE_BYTES]).rstrip(b"=").decode()


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out
