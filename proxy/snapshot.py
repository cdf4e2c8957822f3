"""An experiment's routing state as one process sees it: chosen from without any I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from bandit.models import Experiment
from bandit.policy_inputs import allocation, build_policy, policy_statistics, serving_arms
from bandit.store import ArmCounters
from policies import ArmStatistics, Policy

#: Choices drawn from the policy per vectorised call; the snapshot is rebuilt long before
#: a busy service uses them up, so this trades a little memory for ~1 µs decisions.
CHOICE_BATCH = 256


@dataclass(slots=True)
class Snapshot:
    """Experiment config, statistics and a queue of pre-drawn arm choices."""

    experiment: Experiment
    stats: ArmStatistics
    rng: np.random.Generator
    serving: list[int] = field(init=False)
    policy: Policy | None = field(init=False)
    # Share of the next decisions per arm (shadow arms 0); shape (K,).
    allocation: np.ndarray = field(init=False)
    _cumulative: np.ndarray = field(init=False)
    _queued: list[int] = field(init=False, default_factory=list)
    # The raw config and stats hash it was built from, to skip rebuilding when neither changed.
    source: tuple[bytes, dict[bytes, bytes]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.serving = serving_arms(self.experiment)
        pinned = self.experiment.pinned_arm() is not None
        self.policy = None if pinned else build_policy(self.experiment, self.serving)
        self.allocation = allocation(self.experiment, self.stats, self.rng, self.policy)
        self._cumulative = np.cumsum(self.allocation)

    @classmethod
    def build(cls, experiment: Experiment, counters: ArmCounters, rng: np.random.Generator) -> Snapshot:
        return cls(experiment, policy_statistics(experiment, counters), rng)

    @property
    def name(self) -> str:
        return self.experiment.name

    def choose(self) -> int:
        """Index (into experiment.arms) of the arm for the next request."""
        if self.policy is None:
            return self.serving[0]
        if not self._queued:
            drawn = self.policy.choose(self.stats.subset(np.asarray(self.serving)), self.rng, CHOICE_BATCH)
            self._queued = [self.serving[i] for i in drawn.tolist()]
        return self._queued.pop()

    def choose_for_unit(self, unit: str) -> int:
        """Sticky choice: a unit maps to the same arm while the allocation holds."""
        digest = hashlib.blake2b(f"{self.name}\0{unit}".encode(), digest_size=8).digest()
        position = int.from_bytes(digest, "big") / 2**64 * self._cumulative[-1]
        index = int(np.searchsorted(self._cumulative, position, side="right"))
        return min(index, len(self.allocation) - 1)
