"""The rewards a batcher holds until they are sent, and when they are due: by size, by age, or asked for."""

from __future__ import annotations

from collections import deque

from bandit.client.limits import MAX_FEEDBACK_ITEMS, Item

#: Rewards a batcher holds at most (about 30 MB at most of ids and floats): past it add() drops them.
DEFAULT_MAX_BUFFERED = 100_000
#: How long close() waits by default for what is left to be acknowledged.
DEFAULT_CLOSE_TIMEOUT_S = 10.0
#: What close() waits past its deadline for an answer already on its way, before it fails what is left itself.
CLOSE_GRACE_S = 0.25
#: Why rewards still unacknowledged when close() gave up failed.
NOT_ACKNOWLEDGED_IN_TIME = "not acknowledged before close()'s deadline"


class RewardBuffer:
    """FIFO of (decision, reward, time added); its owner serialises access and tells the time."""

    def __init__(self, max_items: int, max_delay_s: float, max_buffered: int) -> None:
        if not isinstance(max_items, int) or not 1 <= max_items <= MAX_FEEDBACK_ITEMS:
            limit = MAX_FEEDBACK_ITEMS
            raise ValueError(f"max_items must be 1 to {limit} (the service's batch limit), not {max_items}")
        if not max_delay_s > 0:
            raise ValueError(f"max_delay_s must be positive, not {max_delay_s}")
        if not isinstance(max_buffered, int) or max_buffered < max_items:
            raise ValueError(f"max_buffered must be at least max_items ({max_items}), not {max_buffered}")
        self.max_items = max_items
        self.max_delay_s = max_delay_s
        self.max_buffered = max_buffered
        self._items: deque[tuple[str, float, float]] = deque()
        # Counted in items ever put: what flush() asked to send now, and what was taken so far.
        self._flush_upto = 0
        self._put = 0
        self._taken = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item, now: float) -> bool:
        """Buffer the item; False (and nothing kept) when the buffer is full."""
        if len(self._items) >= self.max_buffered:
            return False
        self._items.append((item[0], item[1], now))
        self._put += 1
        return True

    def flush_all(self) -> int:
        """Make every item put so far due now; returns how many that is in all (for waiting on it)."""
        self._flush_upto = self._put
        return self._put

    def due(self, now: float, closing: bool) -> bool:
        """Whether a batch should be taken now."""
        items = self._items
        return bool(items) and (
            closing
            or len(items) >= self.max_items
            or self._flush_upto > self._taken
            or now - items[0][2] >= self.max_delay_s
        )

    def wait_s(self, now: float) -> float | None:
        """How long until the oldest item is due by age (None: nothing buffered)."""
        if not self._items:
            return None
        return max(0.0, self._items[0][2] + self.max_delay_s - now)

    def take(self, limit: int | None = None) -> list[Item]:
        """The oldest items, up to max_items (or `limit`)."""
        count = min(len(self._items), self.max_items if limit is None else limit)
        popleft = self._items.popleft
        batch = []
        for _ in range(count):
            decision, reward, _added = popleft()
            batch.append((decision, reward))
        self._taken += count
        return batch

    def take_all(self) -> list[Item]:
        """Every item still buffered (close() gives up on them)."""
        return self.take(len(self._items))
