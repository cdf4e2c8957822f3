from __future__ import annotations

import time

import pytest

from bandit.core.decision_ids import DecisionSigner
from bandit.core.errors import ForgedDecision
from bandit.core.keyring import SigningKey

SIGNER = DecisionSigner([b"secret-one"])


def test_a_signed_id_says_what_was_decided() -> None:
    decision = SIGNER.verify(SIGNER.sign("exp-1", "v_2", "abcd1234", issued_ms=1_700_000_000_123))
    assert (decision.experiment, decision.arm, decision.incarnation) == ("exp-1", "v_2", "abcd1234")
    assert decision.issued_ms == 1_700_000_000_123
    assert decision.nonce == f"{decision.issuer}-{decision.sequence:x}"
    assert decision.issuer == SIGNER.issuer and len(SIGNER.issuer) == 12


def test_ids_are_unique() -> None:
    assert len({SIGNER.sign("e", "a", "i") for _ in range(1000)}) == 1000


def test_each_experiment_counts_its_own_dense_sequence() -> None:
    signer = DecisionSigner([b"secret-one"])
    sequences = [(d.experiment, d.sequence) for d in map(signer.verify, (signer.sign(e, "a", "i") for e in "xyxxy"))]
    assert sequences == [("x", 0), ("y", 0), ("x", 1), ("x", 2), ("y", 1)]
    assert signer.verify(signer.sign("x", "a", "i")).issuer == signer.issuer


def test_every_signer_is_an_issuer_of_its_own() -> None:
    """Two workers, or a process before and after a restart, never share sequence numbers."""
    issuers = {DecisionSigner([b"secret-one"]).issuer for _ in range(100)}
    assert len(issuers) == 100
    assert all(len(issuer) == 12 and int(issuer, 16) >= 0 for issuer in issuers)


def test_a_forked_child_draws_a_new_issuer() -> None:
    import os

    signer = DecisionSigner([b"secret-one"])
    signer.sign("x", "a", "i")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its issuer and next sequence, then leave at once
        decision = signer.verify(signer.sign("x", "a", "i"))
        os.write(write, f"{decision.issuer} {decision.sequence}".encode())
        os._exit(0)
    os.close(write)
    issuer, sequence = os.read(read, 100).decode().split()
    os.waitpid(pid, 0)
    assert issuer != signer.issuer and sequence == "0"
    assert signer.verify(signer.sign("x", "a", "i")).sequence == 1


def test_the_sequence_cannot_be_changed_without_the_key() -> None:
    pieces = SIGNER.sign("exp", "v1", "abcd1234").split(".")
    issuer, _, sequence = pieces[5].partition("-")
    for nonce in (f"{issuer}-{int(sequence, 16) + 1:x}", f"{issuer}-10000", f"{issuer[::-1]}-{sequence}"):
        with pytest.raises(ForgedDecision, match="forged or altered"):
            SIGNER.verify(".".join([*pieces[:5], nonce, pieces[6]]))


def test_a_signed_nonce_that_is_not_issuer_dash_hex_is_refused() -> None:
    for nonce in ("abc-", "-12", "abc-xyz", "ABC-12"):
        payload = f"exp.v1.abcd1234.lz2bq1xs.0.{nonce}"
        with pytest.raises(ForgedDecision, match="not a valid decision id"):
            SIGNER.verify(f"{payload}.{SIGNER._signature(SIGNER._signing, payload)}")


def test_ids_with_a_random_nonce_still_verify_without_a_sequence() -> None:
    """Ids of earlier releases (16 random hex digits), and what sequenced=False signs for benchmarks."""
    payload = "exp.v1.abcd1234.lz2bq1xs.2bq.0123456789abcdef"
    decision = SIGNER.verify(f"{payload}.{SIGNER._signature(SIGNER._signing, payload)}")
    assert (decision.nonce, decision.issuer, decision.sequence, decision.latency_us) == (
        "0123456789abcdef",
        None,
        None,
        int("2bq", 36),
    )
    legacy = DecisionSigner([b"secret-one"], sequenced=False)
    decision = SIGNER.verify(legacy.sign("exp", "v1", "abcd1234"))
    assert (len(decision.nonce), decision.issuer, decision.sequence) == (16, None, None)


def test_the_request_latency_travels_signed_in_the_id() -> None:
    decision = SIGNER.verify(SIGNER.sign("exp", "v1", "abcd1234", latency_us=1_234_567))
    assert decision.latency_us == 1_234_567


def test_ids_from_before_latencies_still_verify() -> None:
    # The five-part layout of earlier releases, signed with the same key.
    payload = "exp.v1.abcd1234.lz2bq1xs.0123456789abcdef"
    legacy = f"{payload}.{SIGNER._signature(SIGNER._signing, payload)}"
    decision = SIGNER.verify(legacy)
    assert (decision.arm, decision.latency_us, decision.sequence) == ("v1", None, None)


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


class Clock:
    """A settable clock, so the rotation's moments are exact, not slept for."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


NOW = 1_700_000_000.0


def test_the_new_key_signs_and_the_previous_one_verifies_until_its_grace_ends() -> None:
    clock = Clock(NOW)
    old_id = DecisionSigner([b"old"], clock=clock).sign("e", "a", "i")
    signer = DecisionSigner([SigningKey(b"new"), SigningKey(b"old", not_after=NOW + 60)], clock=clock)
    new_id = signer.sign("e", "a", "i")
    assert DecisionSigner([b"new"]).verify(new_id).arm == "a"  # signed with the new key alone
    assert signer.verify(old_id).arm == "a"
    clock.now = NOW + 59.999
    assert signer.verify(old_id).arm == "a"
    clock.now = NOW + 60
    with pytest.raises(ForgedDecision, match=r"retired key: .* ended at 2023-11-14T22:14:20\+00:00"):
        signer.verify(old_id)
    assert signer.verify(new_id).arm == "a"


def test_a_forged_id_is_told_apart_from_a_retired_one() -> None:
    signer = DecisionSigner([SigningKey(b"new"), SigningKey(b"old", not_after=NOW - 1)], clock=Clock(NOW))
    with pytest.raises(ForgedDecision, match="forged or altered"):
        signer.verify(DecisionSigner([b"never-configured"]).sign("e", "a", "i"))


def test_a_pending_key_verifies_at_once_and_signs_from_its_start() -> None:
    # Rotation through Redis: every replica loads the new key before any signs with it.
    clock = Clock(NOW)
    signer = DecisionSigner([SigningKey(b"new", not_before=NOW + 10), SigningKey(b"old", not_after=NOW + 70)], clock)
    early = signer.sign("e", "a", "i")
    assert DecisionSigner([b"old"]).verify(early).arm == "a"
    assert signer.verify(DecisionSigner([b"new"]).sign("e", "a", "i")).arm == "a"  # a replica that switched first
    clock.now = NOW + 10
    late = signer.sign("e", "a", "i")
    assert DecisionSigner([b"new"]).verify(late).arm == "a"
    with pytest.raises(ForgedDecision):
        DecisionSigner([b"old"]).verify(late)


def test_rekey_switches_a_running_signer() -> None:
    signer = DecisionSigner([b"old"])
    signer.rekey([SigningKey(b"new"), SigningKey(b"old", not_after=time.time() + 60)])
    assert DecisionSigner([b"new"]).verify(signer.sign("e", "a", "i")).arm == "a"
    assert signer.keys == (SigningKey(b"new"), SigningKey(b"old", not_after=signer.keys[1].not_after))


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ([], "at least one non-empty secret"),
        ([b""], "at least one non-empty secret"),
        ([SigningKey(b"gone", not_after=NOW - 1)], "no key of the keyring is in force"),
        ([SigningKey(b"later", not_before=NOW + 1)], "no key of the keyring is in force"),
    ],
)
def test_unusable_keyrings_are_refused(keys: list[SigningKey | bytes], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DecisionSigner(keys, clock=Clock(NOW))


@pytest.mark.parametrize("number", [0, 1, 35, 36, 1295, 1296, 1297, 46655, 46656, 1_764_600_000_000, 2**63 - 1])
def test_base36_spells_numbers_as_int_reads_them(number: int) -> None:
    from bandit.core.decision_ids import _base36

    spelled = _base36(number)
    assert int(spelled, 36) == number
    assert spelled == "0" or not spelled.startswith("0")
