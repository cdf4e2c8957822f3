"""Reconciling what the clients were told with what Redis counted, per arm."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from loadtest.faults.load import Ledger
from loadtest.faults.rig import Service

#: How long the counted decisions must stand still before a shortfall is believed (many flushes).
SETTLED_S = 1.5


@dataclass(frozen=True, slots=True)
class Books:
    """Client-side figures beside the service's counts."""

    served: Counter[str]
    decisions: Counter[str]
    acknowledged: Counter[str]
    acknowledged_sum: dict[str, float]
    rewards: Counter[str]
    reward_sum: dict[str, float]

    @property
    def rewards_lost(self) -> int:
        """Acknowledged (202) rewards Redis does not count."""
        return sum(max(0, self.acknowledged[arm] - self.rewards[arm]) for arm in self.acknowledged)

    @property
    def rewards_extra(self) -> int:
        """Rewards Redis counts beyond the acknowledged ones (double counts)."""
        return sum(max(0, self.rewards[arm] - self.acknowledged[arm]) for arm in self.rewards)

    @property
    def rewards_exact(self) -> bool:
        """Every arm's reward count and sum are exactly the acknowledged ones."""
        arms = set(self.acknowledged) | set(self.rewards)
        return all(
            self.rewards[arm] == self.acknowledged[arm]
            and self.reward_sum.get(arm, 0.0) == self.acknowledged_sum.get(arm, 0.0)
            for arm in arms
        )

    @property
    def decisions_lost(self) -> int:
        """Decisions served with a 200 that Redis does not count (negative: counted twice)."""
        return sum(self.served.values()) - sum(self.decisions.values())


def reconcile(service: Service, name: str, ledger: Ledger, also_served: Counter[str] | None = None) -> Books:
    """Wait until the service's decision counts reach what was served (or stop moving), then compare."""
    served = ledger.served + (also_served or Counter())
    expected = sum(served.values())
    last, still_since = -1, time.monotonic()
    deadline = time.monotonic() + 30
    while True:
        arms = service.arms(name)
        total = sum(arm["decisions"] for arm in arms.values())
        if total != last:
            last, still_since = total, time.monotonic()
        if total == expected or time.monotonic() - still_since > SETTLED_S or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    acknowledged, acknowledged_sum = ledger.acknowledged_by_arm()
    return Books(
        served=served,
        decisions=Counter({n: arm["decisions"] for n, arm in arms.items()}),
        acknowledged=acknowledged,
        acknowledged_sum=acknowledged_sum,
        rewards=Counter({n: arm["rewards"] for n, arm in arms.items()}),
        reward_sum={n: float(arm["reward_sum"]) for n, arm in arms.items()},
    )
