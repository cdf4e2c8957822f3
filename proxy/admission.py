"""How many requests one process may have in flight to each arm, so no arm starves the rest.

The upstream client's connections are shared by every arm of every experiment: without a
cap per arm, clients that keep one arm's requests open (slow uploads, an upstream that
hangs) would take them all, and requests to other experiments would wait for a connection.
Each (experiment, upstream URL) gets `max_inflight` requests at once, of which at most
`max_streamed` may be streamed uploads (bodies too large to read before forwarding, which
a slow client can keep open for as long as the body timeouts allow). Counted per process:
a replica with W workers allows W times as many. Every method is O(1), and an arm with
nothing in flight takes no memory.
"""

from __future__ import annotations

from proxy.health import HealthKey


class ArmSlots:
    def __init__(self, max_inflight: int, max_streamed: int) -> None:
        self.max_inflight = max_inflight
        self.max_streamed = max_streamed
        self._inflight: dict[HealthKey, int] = {}
        self._streamed: dict[HealthKey, int] = {}

    def free(self, key: HealthKey, streamed: bool) -> bool:
        """May one more request (a streamed upload if `streamed`) go to `key` now?"""
        if self._inflight.get(key, 0) >= self.max_inflight:
            return False
        return not streamed or self._streamed.get(key, 0) < self.max_streamed

    def take(self, key: HealthKey, streamed: bool) -> None:
        self._inflight[key] = self._inflight.get(key, 0) + 1
        if streamed:
            self._streamed[key] = self._streamed.get(key, 0) + 1

    def release(self, key: HealthKey, streamed: bool) -> None:
        _decrement(self._inflight, key)
        if streamed:
            _decrement(self._streamed, key)

    def refusal(self, key: HealthKey, streamed: bool) -> str:
        """Why `key` takes no more now, for the 503's detail."""
        if streamed and self._inflight.get(key, 0) < self.max_inflight:
            return f"{self.max_streamed} streamed uploads in flight (BANDIT_ARM_MAX_STREAMED_UPLOADS)"
        return f"{self.max_inflight} requests in flight (BANDIT_ARM_MAX_INFLIGHT)"


def _decrement(counts: dict[HealthKey, int], key: HealthKey) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
