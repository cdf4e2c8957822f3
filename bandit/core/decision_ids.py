"""Signed, self-describing decision ids: feedback is validated without a lookup.

An id reads ``<experiment>.<arm>.<incarnation>.<issued ms, base 36>.<latency µs, base 36>.<nonce>.<signature>``;
names never contain dots. The latency is the proxy's own measurement of the request
(to the upstream's response headers), so a latency penalty needs no lookup either;
ids from before it was added (without that part) still verify. The signature is HMAC-SHA256 over everything before it,
truncated to 128 bits and base64url-encoded, so nobody can reward a decision that
was never made, nor move one to another arm or time.

The nonce is ``<issuer>-<sequence, hex>``: the issuer is 12 random hex digits drawn once per
signer (per process, drawn again in a forked child), and the sequence counts the decisions
that issuer signed for the experiment, from 0. Within the feedback window a decision is named
by (experiment, issuer, sequence) alone, so the feedback script keeps one *bit* per decision
in a bitmap per issuer and block of sequence numbers instead of one key per reward. A process
that restarts draws a new issuer: no sequence number is ever reused. Ids issued before this
(a random nonce of 16 hex digits, no dash) still verify; they are told apart by the dash and
keep their one-key-per-reward markers.

Keys rotate: a new key signs from its start time, the one it replaces still verifies until
its grace period ends, and an id signed with a key past that is refused with a message
saying so (403, like a forgery: the signature no longer counts).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import itertools
import math
import os
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from bandit.core.errors import ForgedDecision
from bandit.core.keyring import SigningKey

_SIGNATURE_BYTES = 16
#: Random bytes of an issuer (12 hex digits): two processes drawing the same one within a
#: feedback window (probability ~ n^2 / 2^49 for n processes) would share sequence numbers.
_ISSUER_BYTES = 6
_HEX_DIGITS = frozenset("0123456789abcdef")
#: Base64 characters of a signature without its padding, and the url-safe alphabet's two.
_SIGNATURE_CHARS = (_SIGNATURE_BYTES * 4 + 2) // 3
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class Decision(NamedTuple):
    """What a verified decision id says (a named tuple: feedback builds one per reward, cheaply)."""

    experiment: str
    arm: str
    incarnation: str
    issued_ms: int
    nonce: str
    # None for ids issued before latencies were recorded in them.
    latency_us: int | None = None
    # Who signed it and its place in that issuer's count for the experiment: None for ids
    # whose nonce is random (issued by earlier releases).
    issuer: str | None = None
    sequence: int | None = None


class DecisionSigner:
    """Signs with the newest key in force and verifies with every key not yet retired (key rotation).

    Plain secrets are keys without time limits; among keys equally in force the first listed signs.
    Each signer is its own issuer of sequence numbers; `sequenced=False` signs random nonces as
    earlier releases did (for benchmarks and tests of such ids, never in the service).
    """

    def __init__(
        self, keys: Sequence[SigningKey | bytes], clock: Callable[[], float] = time.time, *, sequenced: bool = True
    ) -> None:
        self._clock = clock
        self._sequenced = sequenced
        self._new_issuer()
        _SIGNERS.add(self)
        self.rekey(keys)

    @property
    def issuer(self) -> str:
        """The issuer part of the nonces this signer signs now."""
        return self._issuer

    def _new_issuer(self) -> None:
        """A fresh issuer with every sequence at 0 (at creation, and in a forked child process)."""
        self._issuer = os.urandom(_ISSUER_BYTES).hex()
        self._sequences: dict[str, Iterator[int]] = {}

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
        self._keys = [(key, _Mac(key.secret)) for key in ring]
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
        if self._sequenced:
            counter = self._sequences.get(experiment)
            if counter is None:
                counter = self._sequences.setdefault(experiment, itertools.count())
            nonce = f"{self._issuer}-{next(counter):x}"
        else:
            nonce = os.urandom(8).hex()
        payload = f"{experiment}.{arm}.{incarnation}.{_base36(issued)}.{_base36(max(latency_us, 0))}.{nonce}"
        return f"{payload}.{self._signature(self._signing, payload)}"

    def verify(self, decision_id: str) -> Decision:
        """The decision behind an id; raises ForgedDecision unless a key not yet retired signed it."""
        payload, _, signature = decision_id.rpartition(".")
        parts = payload.split(".")
        if len(parts) not in (5, 6) or not signature.isascii():
            raise ForgedDecision(detail="decision is not a valid decision id")
        message, expected = payload.encode(), signature.encode()
        signed_by = None
        for key, mac in self._keys:
            # The bytes _signature() spells, without its string round trips: this runs per reward.
            computed = binascii.b2a_base64(mac.digest(message)[:_SIGNATURE_BYTES], newline=False)
            if hmac.compare_digest(computed[:_SIGNATURE_CHARS].translate(_URLSAFE), expected):
                signed_by = key
                break
        if signed_by is None:
            raise ForgedDecision(detail="decision id signature does not verify: forged or altered")
        if signed_by.not_after is not None and signed_by.retired(self._clock()):
            assert signed_by.not_after is not None
            ended = datetime.fromtimestamp(signed_by.not_after, UTC).isoformat(timespec="seconds")
            raise ForgedDecision(
                detail=f"decision id was signed with a retired key: the rotation's grace period ended at {ended}"
            )
        if len(parts) == 5:
            experiment, arm, incarnation, issued, nonce = parts
            return Decision(experiment, arm, incarnation, int(issued, 36), nonce)
        experiment, arm, incarnation, issued, latency, nonce = parts
        issuer, dash, sequence = nonce.partition("-")
        if not dash:  # a random nonce: an id of an earlier release
            return Decision(experiment, arm, incarnation, int(issued, 36), nonce, int(latency, 36))
        if not (issuer and sequence and _HEX_DIGITS.issuperset(issuer) and _HEX_DIGITS.issuperset(sequence)):
            raise ForgedDecision(detail="decision is not a valid decision id")
        return Decision(
            experiment, arm, incarnation, int(issued, 36), nonce, int(latency, 36), issuer, int(sequence, 16)
        )

    @staticmethod
    def _signature(key: _Mac, payload: str) -> str:
        encoded = binascii.b2a_base64(key.digest(payload.encode())[:_SIGNATURE_BYTES], newline=False)
        return encoded[:_SIGNATURE_CHARS].translate(_URLSAFE).decode()


#: HMAC's inner and outer pads (RFC 2104) as translation tables: byte x becomes x ^ pad.
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))
_SHA256_BLOCK = hashlib.sha256().block_size


class _Mac:
    """HMAC-SHA256 (RFC 2104, what `hmac.new(secret, message, hashlib.sha256)` computes) of one key.

    Both padded keys are hashed once; an id then costs two copies of those hash states and two
    updates, all in C, where `hmac.HMAC.copy()` goes through Python wrappers (2.5 µs against
    0.9 µs, measured), and feedback verifies one id per reward.
    `tests/core/test_decision_ids.py` checks it against `hmac` for keys of every length.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        if len(secret) > _SHA256_BLOCK:
            secret = hashlib.sha256(secret).digest()
        padded = secret.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(padded.translate(_INNER_PAD))
        self._outer = hashlib.sha256(padded.translate(_OUTER_PAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


#: Every signer of this process, so that a forked child draws issuers of its own.
_SIGNERS: weakref.WeakSet[DecisionSigner] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for signer in list(_SIGNERS):
        signer._new_issuer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_BASE36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# Every pair of base-36 digits, "00" to "zz": a number is spelled two digits per division.
_BASE36_PAIRS = tuple(high + low for high in _BASE36_DIGITS for low in _BASE36_DIGITS)


def _base36(number: int) -> str:
    """`number` (>= 0) in base 36, lower case, as `int(text, 36)` reads it back.

    Every decision id spells two numbers this way (its time in ms and its latency in µs):
    two digits per division keeps it under a microsecond.
    """
    if number < 36:
        return _BASE36_DIGITS[number]
    pairs = []
    while number:
        number, rest = divmod(number, 1296)
        pairs.append(_BASE36_PAIRS[rest])
    return "".join(reversed(pairs)).lstrip("0")
