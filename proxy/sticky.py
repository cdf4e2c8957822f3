"""Remembered arm assignments of sticky units (`X-Bandit-Unit`), with a TTL, per process.

A learning policy's allocation moves as it learns, so hashing alone would move a unit
between versions; each process remembers the arm it gave a unit for `ttl_s`. New units
hash onto the current allocation (see `Snapshot.choose_for_unit`), which gives the same
arm on every replica.

Units are kept by their 8-byte digest (`Snapshot.unit_digest`, which names the experiment
too), never by the id a client sent, so a long id costs what a short one does, and the map
is bounded in entries, oldest first out: at `DEFAULT_MAX_UNITS` it holds at most
`BYTES_PER_UNIT` × that (226 B measured; tests/proxy/test_sticky.py holds it to the bound), about 51 MB.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_TTL_S = 3600.0
DEFAULT_MAX_UNITS = 200_000
#: The most memory one remembered unit takes: its digest, the arm and expiry, the map's own node.
BYTES_PER_UNIT = 256


class StickyAssignments:
    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        max_units: int = DEFAULT_MAX_UNITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_units = max_units
        self.clock = clock
        self._arms: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def get(self, unit: bytes) -> str | None:
        """The arm remembered for the unit of digest `unit`, or None when there is none or its TTL has passed."""
        entry = self._arms.get(unit)
        if entry is None:
            return None
        arm, expires_at = entry
        if self.clock() >= expires_at:
            del self._arms[unit]
            return None
        return arm

    def remember(self, unit: bytes, arm: str) -> None:
        key = unit
        self._arms[key] = (arm, self.clock() + self.ttl_s)
        self._arms.move_to_end(key)
        while len(self._arms) > self.max_units:
            self._arms.popitem(last=False)
