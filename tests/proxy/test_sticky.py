"""Sticky units cost the same few bytes whatever id a client sends (issue 17, row D)."""

from __future__ import annotations

import hashlib
import tracemalloc

import msgspec
import numpy as np

from bandit.core.counters import ArmCounters
from bandit.core.models import Experiment
from proxy.clients.base import Timeouts
from proxy.snapshot import Snapshot
from proxy.sticky import BYTES_PER_UNIT, StickyAssignments
from tests.proxy.bare_proxy import bare_proxy


def _snapshot() -> Snapshot:
    arms = [{"name": name, "url": f"http://127.0.0.1:9/{name}"} for name in ("v1", "v2", "v3")]
    experiment = msgspec.convert(
        {"name": "sticky", "arms": arms, "policy": {"kind": "thompson"}, "incarnation": "i1"}, Experiment
    )
    counters = ArmCounters("i1", *[np.zeros(3) for _ in range(13)])
    return Snapshot.build(experiment, counters, np.random.default_rng(7), Timeouts(2.0, 5.0))


def test_a_unit_is_remembered_by_a_fixed_size_digest_however_long_its_id() -> None:
    snapshot = _snapshot()
    sticky = StickyAssignments()
    proxy = bare_proxy(None, None, sticky)
    count = 2_000

    def unit(i: int) -> bytes:
        # A new object each time, as each request's header is: keeping it would be counted.
        return f"unit-{i}-".encode() + b"x" * 16_384

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        chosen = [proxy._choose(snapshot, unit(i)) for i in range(count)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Kept by id, 2,000 ids of 16 KiB would hold 32 MB; by digest, a few hundred bytes each.
    assert grown < count * BYTES_PER_UNIT, grown
    # And each unit still keeps its arm.
    assert [proxy._choose(snapshot, unit(i)) for i in range(count)] == chosen
    assert len({*chosen}) > 1


def test_the_digest_is_the_one_earlier_releases_hashed_units_by() -> None:
    snapshot = _snapshot()
    for unit in (b"user-7", "caf\u00e9".encode(), b"\xff\x00"):
        earlier = hashlib.blake2b(f"sticky\0{unit.decode('latin-1')}".encode(), digest_size=8).digest()
        assert snapshot.unit_digest(unit) == earlier
