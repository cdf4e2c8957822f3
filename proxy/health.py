"""Passive health of each arm, as seen by this process's forwarded requests."""

from __future__ import annotations

from collections import defaultdict

#: Consecutive failed requests after which an arm is reported unhealthy.
FAILURES_UNTIL_UNHEALTHY = 3


class ArmHealth:
    """Counts consecutive failures per (experiment, arm); any success clears them."""

    def __init__(self, failures_until_unhealthy: int = FAILURES_UNTIL_UNHEALTHY) -> None:
        self.failures_until_unhealthy = failures_until_unhealthy
        self._consecutive_failures: defaultdict[tuple[str, str], int] = defaultdict(int)

    def observe(self, experiment: str, arm: str, failed: bool) -> None:
        if failed:
            self._consecutive_failures[(experiment, arm)] += 1
        else:
            self._consecutive_failures.pop((experiment, arm), None)

    def is_healthy(self, experiment: str, arm: str) -> bool:
        return self._consecutive_failures.get((experiment, arm), 0) < self.failures_until_unhealthy
