from __future__ import annotations

import pytest

from bandit.decision_ids import DecisionSigner
from bandit.exceptions import ForgedDecision

SIGNER = DecisionSigner([b"secret-one"])


def test_a_signed_id_says_what_was_decided() -> None:
    decision = SIGNER.verify(SIGNER.sign("exp-1", "v_2", "abcd1234", issued_ms=1_700_000_000_123))
    assert (decision.experiment, decision.arm, decision.incarnation) == ("exp-1", "v_2", "abcd1234")
    assert decision.issued_ms == 1_700_000_000_123
    assert len(decision.nonce) == 16


def test_ids_are_unique() -> None:
    assert len({SIGNER.sign("e", "a", "i") for _ in range(1000)}) == 1000


def test_the_request_latency_travels_signed_in_the_id() -> None:
    decision = SIGNER.verify(SIGNER.sign("exp", "v1", "abcd1234", latency_us=1_234_567))
    assert decision.latency_us == 1_234_567


def test_ids_from_before_latencies_still_verify() -> None:
    # The five-part layout of earlier releases, signed with the same key.
    payload = "exp.v1.abcd1234.lz2bq1xs.0123456789abcdef"
    legacy = f"{payload}.{SIGNER._signature(SIGNER._signing, payload)}"
    decision = SIGNER.verify(legacy)
    assert (decision.arm, decision.latency_us) == ("v1", None)


@pytest.mark.parametrize("part", range(7))
def test_altering_any_part_is_detected(part: int) -> None:
    pieces = SIGNER.sign("exp", "v1", "abcd1234").split(".")
    pieces[part] = pieces[part][:-1] + ("x" if pieces[part][-1] != "x" else "y")
    with pytest.raises(ForgedDecision):
        SIGNER.verify(".".join(pieces))


@pytest.mark.parametrize("forged", ["", "nonsense", "a.b.c.d.e", "a.b.c.d.e.f.g.h", "é.b.c.d.e.f"])
def test_garbage_is_refused(forged: str) -> None:
    with pytest.raises(ForgedDecision):
        SIGNER.verify(forged)


def test_another_secret_does_not_verify_but_a_previous_one_does() -> None:
    old = DecisionSigner([b"old"]).sign("e", "a", "i")
    with pytest.raises(ForgedDecision):
        SIGNER.verify(old)
    assert DecisionSigner([b"new", b"old"]).verify(old).arm == "a"
