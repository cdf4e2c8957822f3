"""How long a batcher waits before sending a batch again."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with jitter, capped, and the service's Retry-After as a floor.

    The n-th retry in a row of one batch waits between half and all of the ceiling
    `min(max_s, initial_s · multiplier^(n-1))`, and never less than the Retry-After the service
    asked for: then that long plus up to half the ceiling, so clients that failed together do not
    all come back in the same instant. Retry-After is capped at `max_retry_after_s`, so a wrong
    header cannot park the batcher for hours.
    """

    initial_s: float = 0.1
    max_s: float = 10.0
    multiplier: float = 2.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"back-off needs 0 < initial_s <= max_s, got {self.initial_s} and {self.max_s}")
        if self.multiplier < 1:
            raise ValueError(f"back-off multiplier must be at least 1, got {self.multiplier}")
        if self.max_retry_after_s < 0:
            raise ValueError(f"max_retry_after_s must not be negative, got {self.max_retry_after_s}")

    def delay_s(self, retry: int, retry_after_s: float | None, rng: random.Random) -> float:
        """The wait before retry number `retry` (1 for the first) of the same batch."""
        # The exponent stops growing long before it matters, so a long outage never overflows it.
        ceiling = min(self.max_s, self.initial_s * self.multiplier ** min(retry - 1, 64))
        floor = ceiling / 2 if retry_after_s is None else max(ceiling / 2, min(retry_after_s, self.max_retry_after_s))
        return floor + rng.uniform(0, ceiling / 2)
