"""Signed, self-describing decision ids: feedback is validated without a lookup.

An id reads ``<experiment>.<arm>.<incarnation>.<issued ms, base 36>.<latency µs, base 36>.<nonce>.<signature>``;
names never contain dots. The latency is the proxy's own measurement of the request
(to the upstream's response headers), so a latency penalty needs no lookup either;
ids from before it was added (without that part) still verify. The signature is HMAC-SHA256 over everything before it,
truncated to 128 bits and base64url-encoded, so nobody can reward a decision that
was never made, nor move one to another arm or time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass

from bandit.exceptions import ForgedDecision

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
    """Signs with the first secret and verifies with any of them (for key rotation)."""

    def __init__(self, secrets: list[bytes]) -> None:
        if not secrets or not all(secrets):
            raise ValueError("at least one non-empty secret is needed to sign decision ids")
        self._signing = hmac.new(secrets[0], digestmod=hashlib.sha256)
        self._verifying = [hmac.new(secret, digestmod=hashlib.sha256) for secret in secrets]

    def sign(
        self, experiment: str, arm: str, incarnation: str, issued_ms: int | None = None, latency_us: int = 0
    ) -> str:
        """A new decision id for choosing `arm` in `experiment`, whose request took `latency_us`."""
        issued = time.time_ns() // 1_000_000 if issued_ms is None else issued_ms
        payload = (
            f"{experiment}.{arm}.{incarnation}.{_base36(issued)}.{_base36(max(latency_us, 0))}.{os.urandom(8).hex()}"
        )
        return f"{payload}.{self._signature(self._signing, payload)}"

    def verify(self, decision_id: str) -> Decision:
        """The decision behind an id; raises ForgedDecision unless the signature verifies."""
        payload, _, signature = decision_id.rpartition(".")
        parts = payload.split(".")
        if len(parts) not in (5, 6) or not signature.isascii():
            raise ForgedDecision(detail="decision is not a valid decision id")
        if not any(hmac.compare_digest(self._signature(key, payload), signature) for key in self._verifying):
            raise ForgedDecision(detail="decision id signature does not verify: forged or altered")
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
